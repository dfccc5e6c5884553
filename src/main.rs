//! Entry point: parse the command line, load the config, run the daemon.

use std::process::ExitCode;

use clap::Parser;
use xmpp_component_router::{cli, config, daemon, logging, metrics};

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xmpp-component-router: invalid config: {e}");
            return ExitCode::from(cli::EXIT_CONFIG);
        }
    };
    if let Some(cli::Command::Status) = args.command {
        let listen = config.metrics.as_ref().map(|m| m.listen);
        let code = metrics::status::run(
            &args.config,
            listen,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        );
        return ExitCode::from(code);
    }
    if args.check {
        print!("{}", cli::summary(&config));
        return ExitCode::SUCCESS;
    }
    logging::init(&config.log_level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xmpp-component-router: cannot start the runtime: {e}");
            return ExitCode::from(cli::EXIT_FATAL);
        }
    };
    match rt.block_on(daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        // Printed once, as the config errors above are: not through the log, which
        // `RUST_LOG` may silence; journald files an unprefixed line as an error
        // (`SyslogLevel=err` in the unit).
        Err(e) => {
            eprintln!("xmpp-component-router: {e}");
            ExitCode::from(cli::EXIT_FATAL)
        }
    }
}
