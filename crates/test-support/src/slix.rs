//! A real slixmpp `ComponentXMPP` (Debian's python3-slixmpp 1.8) as a child
//! process: `py/slix_component.py`, run with `/usr/bin/python3`, connected to
//! a router (or a server) for one domain, and driven line by line in JSON.
//!
//! It writes one event per line on its stdout (`{"ev":"online"}`,
//! `{"ev":"message",..}`, `{"ev":"iq",..}`, `{"ev":"iq_result",..}`,
//! `{"ev":"disconnected",..}`, ...; the script's docstring lists them) and
//! reads one command per line on its stdin. A reader thread hands the events
//! to a bounded channel; [`Slix::expect`] picks the next event a test waits
//! for and keeps the others for later waits, so no event is lost to a wait
//! for another. It answers every iq get or set with a result, and with
//! [`SlixOptions::echo`] every message with a body to its sender (a bridge
//! stand-in). The script exits when its connection ends; [`Slix::restart`]
//! runs it again for the same domain, [`Slix::kill`] SIGKILLs it (no stream
//! close: the kernel closes its socket), Drop kills it.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::child::{collect_lines, tail, Kept};
use crate::not_run;

pub const PYTHON: &str = "/usr/bin/python3";
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/py/slix_component.py");
/// How long a wait for one event lasts by default.
pub const T: Duration = Duration::from_secs(10);
/// Events not yet read by the test, per run of the script.
const EVENT_QUEUE: usize = 4096;

/// Is `/usr/bin/python3` there with slixmpp importable? (Asked once.)
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Path::new(PYTHON).is_file()
            && Command::new(PYTHON)
                .args(["-c", "import slixmpp"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    })
}

/// Call first in every test that needs slixmpp. Returns `true` when it is
/// installed. When it is missing: fails under CI (`CI=true`); otherwise records
/// that the test did not run (see [`not_run`]) and returns `false` (the test
/// should then return early).
#[track_caller]
pub fn require() -> bool {
    if available() {
        return true;
    }
    not_run::missing(
        &format!("slixmpp tests in {}", std::panic::Location::caller().file()),
        &format!("{PYTHON} cannot import slixmpp: apt-get install python3-slixmpp"),
    );
    false
}

/// Where the component connects and as what.
#[derive(Clone, Debug)]
pub struct SlixOptions {
    pub addr: SocketAddr,
    pub domain: String,
    pub secret: String,
    /// Answer every message with a body to its sender: same body, type and id.
    pub echo: bool,
}

impl SlixOptions {
    pub fn new(addr: SocketAddr, domain: &str, secret: &str) -> Self {
        SlixOptions {
            addr,
            domain: domain.to_string(),
            secret: secret.to_string(),
            echo: false,
        }
    }

    pub fn echo(mut self) -> Self {
        self.echo = true;
        self
    }
}

/// The event's kind (`"online"`, `"message"`, ...).
pub fn ev(e: &Value) -> &str {
    e["ev"].as_str().unwrap_or("")
}

/// A string field of an event (`None` if absent or null).
pub fn field<'a>(e: &'a Value, key: &str) -> Option<&'a str> {
    e[key].as_str()
}

/// A `message` event with this body.
pub fn is_message(body: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| ev(e) == "message" && field(e, "body") == Some(body)
}

/// A running slixmpp component. Dropping it kills the process.
pub struct Slix {
    opts: SlixOptions,
    child: Option<Kept>,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Value>,
    /// Events read while waiting for another, oldest first.
    pending: VecDeque<Value>,
    /// Its stderr, all runs.
    log: Arc<Mutex<String>>,
    next_id: u64,
}

impl Slix {
    /// Run the script; it connects (retrying while nothing listens) and
    /// authenticates. Does not wait: see [`Slix::online`], [`Slix::start`].
    pub fn spawn(opts: &SlixOptions) -> io::Result<Slix> {
        let (_, events) = mpsc::channel(1);
        let mut s = Slix {
            opts: opts.clone(),
            child: None,
            stdin: None,
            events,
            pending: VecDeque::new(),
            log: Arc::new(Mutex::new(String::new())),
            next_id: 0,
        };
        s.run()?;
        Ok(s)
    }

    /// [`Slix::spawn`], then wait until the handshake is accepted; panics
    /// with its log and events otherwise.
    pub async fn start(opts: &SlixOptions) -> Slix {
        let mut s = Slix::spawn(opts).unwrap_or_else(|e| panic!("cannot run {SCRIPT}: {e}"));
        s.expect_online(T).await;
        s
    }

    pub fn options(&self) -> &SlixOptions {
        &self.opts
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Kept::id)
    }

    /// Its stderr (slixmpp's warnings, a traceback), all runs.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The next event, oldest kept one first; `None` after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// The first event satisfying `pred` within `within`; the others are kept
    /// for later waits. `None` after `within`, or once the script has exited
    /// without sending it.
    pub async fn wait_for(
        &mut self,
        mut pred: impl FnMut(&Value) -> bool,
        within: Duration,
    ) -> Option<Value> {
        if let Some(i) = self.pending.iter().position(&mut pred) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + within;
        loop {
            let got = tokio::time::timeout_at(deadline, self.events.recv()).await;
            match got.ok().flatten() {
                Some(e) if pred(&e) => return Some(e),
                Some(e) => self.pending.push_back(e),
                None => return None,
            }
        }
    }

    /// [`Slix::wait_for`]; panics with `what`, the events seen and the log
    /// if none came.
    pub async fn expect(
        &mut self,
        pred: impl FnMut(&Value) -> bool,
        within: Duration,
        what: &str,
    ) -> Value {
        match self.wait_for(pred, within).await {
            Some(e) => e,
            None => panic!(
                "{}: {what} within {within:?}\n{}",
                self.opts.domain,
                self.diagnostics()
            ),
        }
    }

    /// Wait for `online`. `Err` with the event if the connection ended first
    /// (a `stream_error` or `disconnected`, e.g. `conflict`), or `Err(None)`
    /// after `within`.
    pub async fn online(&mut self, within: Duration) -> Result<(), Option<Value>> {
        let ended =
            |e: &Value| matches!(ev(e), "online" | "stream_error" | "disconnected" | "exit");
        match self.wait_for(ended, within).await {
            Some(e) if ev(&e) == "online" => Ok(()),
            other => Err(other),
        }
    }

    /// [`Slix::online`], panicking otherwise.
    pub async fn expect_online(&mut self, within: Duration) {
        if let Err(e) = self.online(within).await {
            panic!(
                "{} not online: {e:?}\n{}",
                self.opts.domain,
                self.diagnostics()
            );
        }
    }

    /// Write one command line.
    pub fn command(&mut self, cmd: Value) {
        let line = format!("{cmd}\n");
        let written = match self.stdin.as_mut() {
            Some(w) => w.write_all(line.as_bytes()).and_then(|()| w.flush()),
            None => Err(io::Error::other("not running")),
        };
        if let Err(e) = written {
            panic!(
                "{}: cannot send {cmd}: {e}\n{}",
                self.opts.domain,
                self.diagnostics()
            );
        }
    }

    /// A chat message from `from` (the domain if `None`) to `to`.
    pub fn send_message(&mut self, from: Option<&str>, to: &str, body: &str, id: &str) {
        let from = from.unwrap_or(&self.opts.domain).to_string();
        self.command(json!({"cmd": "message", "from": from, "to": to, "body": body, "id": id}));
    }

    /// Presence from the domain to `to` (`kind` e.g. `"unavailable"`, or `None`).
    pub fn send_presence(&mut self, to: &str, kind: Option<&str>) {
        let from = self.opts.domain.clone();
        self.command(json!({"cmd": "presence", "from": from, "to": to, "type": kind}));
    }

    /// An iq get (`payload` `"ping"` or `"disco"`) from the domain to `to`;
    /// returns its `iq_result` event (`type` `result`, `error` with its
    /// `condition`, or `timeout`). Panics if none came within `within`.
    pub async fn iq_get(&mut self, to: &str, payload: &str, within: Duration) -> Value {
        self.next_id += 1;
        let id = format!("slix-{}", self.next_id);
        let from = self.opts.domain.clone();
        self.command(
            json!({"cmd": "iq_get", "from": from, "to": to, "id": id, "payload": payload}),
        );
        let is_result = |e: &Value| ev(e) == "iq_result" && field(e, "id") == Some(id.as_str());
        self.expect(is_result, within, &format!("no answer to iq {id} to {to}"))
            .await
    }

    /// End the stream cleanly and wait for the script to exit.
    pub async fn quit(&mut self) {
        self.command(json!({"cmd": "quit"}));
        let exit = |e: &Value| ev(e) == "exit";
        self.expect(exit, T, "no exit after quit").await;
        self.child = None;
    }

    /// SIGKILL: no stream close, the kernel closes its socket. Idempotent.
    pub fn kill(&mut self) {
        self.stdin = None;
        self.child = None; // Kept's Drop: SIGKILL, reap.
    }

    /// Kill it if it runs, and run it again for the same domain (events not
    /// read yet are dropped). Does not wait for `online`.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.pending.clear();
        self.run()
    }

    /// What a failing test prints: the events kept and the log's tail.
    pub fn diagnostics(&self) -> String {
        let kept: Vec<String> = self.pending.iter().map(Value::to_string).collect();
        format!(
            "events kept: [{}]\n{}",
            kept.join(", "),
            tail("slixmpp stderr", &self.log(), 40)
        )
    }

    fn run(&mut self) -> io::Result<()> {
        let o = &self.opts;
        let mut cmd = Command::new(PYTHON);
        cmd.arg(SCRIPT)
            .arg(o.addr.ip().to_string())
            .arg(o.addr.port().to_string())
            .arg(&o.domain)
            .arg(&o.secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if o.echo {
            cmd.arg("--echo");
        }
        let mut child = Kept::spawn(cmd, "slixmpp")?;
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let c = child.child_mut();
        self.stdin = c.stdin.take();
        if let Some(out) = c.stdout.take() {
            std::thread::spawn(move || read_events(out, tx));
        }
        if let Some(err) = c.stderr.take() {
            let log = self.log.clone();
            std::thread::spawn(move || collect_lines(err, log, "slixmpp"));
        }
        self.events = rx;
        self.child = Some(child);
        Ok(())
    }
}

/// Its stdout, a JSON event per line, into the channel; a line that is not
/// JSON becomes `{"ev":"stdout","line":..}`; EOF becomes `{"ev":"exit"}`.
fn read_events(out: impl Read, tx: mpsc::Sender<Value>) {
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        let e =
            serde_json::from_str(&line).unwrap_or_else(|_| json!({"ev": "stdout", "line": line}));
        if tx.blocking_send(e).is_err() {
            return;
        }
    }
    let _ = tx.blocking_send(json!({"ev": "exit"}));
}
