//! `relay` mode: the "plain relay" anchor. One-thread tokio byte relay
//! (`copy_bidirectional`, 64 KiB buffers, TCP_NODELAY), no parsing.

use crate::json::Obj;
use crate::proto::io_err;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    active: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    errors: AtomicU64,
}

async fn handle(mut client: TcpStream, to: Arc<Vec<SocketAddr>>, st: Arc<Stats>) {
    let mut upstream = None;
    let mut last = String::new();
    for a in to.iter() {
        match TcpStream::connect(a).await {
            Ok(s) => {
                upstream = Some(s);
                break;
            }
            Err(e) => last = io_err(&format!("connect to {a}"), &e),
        }
    }
    let Some(mut up) = upstream else {
        eprintln!("loadgen relay: {last}");
        st.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    st.active.fetch_add(1, Ordering::Relaxed);
    match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut up, 64 * 1024, 64 * 1024).await
    {
        Ok((a, b)) => {
            st.bytes_up.fetch_add(a, Ordering::Relaxed);
            st.bytes_down.fetch_add(b, Ordering::Relaxed);
        }
        Err(_) => {
            // Resets at shutdown are normal for a relay; counted only.
            st.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    st.active.fetch_sub(1, Ordering::Relaxed);
}

/// Runs until SIGTERM or SIGINT, then prints a JSON summary.
pub fn run(listen: SocketAddr, to: Vec<SocketAddr>) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen relay: tokio runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let mut o = Obj::new();
        o.set("mode", "relay");
        let listener = match TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                let e = io_err(&format!("bind {listen}"), &e);
                eprintln!("loadgen relay: {e}");
                o.set("ok", false).set("error", e);
                println!("{o}");
                return 1;
            }
        };
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let to_s = to
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        eprintln!("loadgen relay: listening on {local} -> {to_s}");
        #[cfg(unix)]
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("loadgen relay: cannot install SIGTERM handler: {e}");
                    return 1;
                }
            };
        let st = Arc::new(Stats::default());
        let to = Arc::new(to);
        loop {
            #[cfg(unix)]
            let term_fut = term.recv();
            #[cfg(not(unix))]
            let term_fut = std::future::pending::<Option<()>>();
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((sock, _)) => {
                        st.connections.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(handle(sock, to.clone(), st.clone()));
                    }
                    Err(e) => {
                        st.errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("loadgen relay: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
                _ = term_fut => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        eprintln!("loadgen relay: stopping");
        o.set("listen", local)
            .set("to", to_s)
            .set("connections", st.connections.load(Ordering::Relaxed))
            .set("active_at_stop", st.active.load(Ordering::Relaxed))
            .set("bytes_up_closed", st.bytes_up.load(Ordering::Relaxed))
            .set("bytes_down_closed", st.bytes_down.load(Ordering::Relaxed))
            .set("errors", st.errors.load(Ordering::Relaxed))
            .set("ok", true);
        println!("{o}");
        0
    })
}
