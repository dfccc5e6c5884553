//! The metrics listener: HTTP/1.1 (hyper) on the daemon's runtime, serving
//! `GET /metrics`, `GET /health` and `GET /status`; 404 for other paths, 405 for
//! other methods.
//!
//! It must never affect component traffic, so every resource it uses is bounded:
//! - at most `max_connections` connections; when full, the oldest connection
//!   that has not sent a complete request yet is closed to make room (so a
//!   flood of idle connections cannot lock a scraper out), and a connection is
//!   refused only when every slot is answering a request;
//! - the request head must arrive within `header_read_timeout` and fit in
//!   `max_request_bytes` (beyond it: 431); a malformed request gets 400;
//! - one request per connection (no keep-alive), and a connection lives at most
//!   `connection_timeout`, so a scraper that stops reading is cut off;
//! - the snapshot and its encoding (whose cost grows with the number of
//!   domains) run on a blocking thread, never on a worker, at most
//!   `max_concurrent_renders` at a time.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use super::exporter::Exporter;
use super::exposition::Format;

/// Bounds of the metrics listener (see the module doc).
#[derive(Clone, Debug)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub connection_timeout: Duration,
    /// Request line plus headers; at least 8192 (hyper's smallest buffer).
    pub max_request_bytes: usize,
    pub max_concurrent_renders: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
            max_request_bytes: 8192,
            max_concurrent_renders: 1,
        }
    }
}

/// After an accept error (e.g. out of file descriptors), wait this long.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// On stop, requests being answered get this long to finish.
const STOP_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// A running metrics listener. Dropping it stops it too (in the background).
#[derive(Debug)]
pub struct MetricsServer {
    requested: SocketAddr,
    local: SocketAddr,
    exporter: Arc<Exporter>,
    limits: HttpLimits,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl MetricsServer {
    /// Binds `addr` and serves `exporter` on it. Call within the runtime.
    pub fn bind(
        addr: SocketAddr,
        exporter: Arc<Exporter>,
        limits: HttpLimits,
    ) -> Result<Self, ListenError> {
        let listener = listen(addr).map_err(|source| ListenError::Bind { addr, source })?;
        let local = listener.local_addr().unwrap_or(addr);
        let shared = Arc::new(Shared {
            exporter: exporter.clone(),
            renders: Semaphore::new(limits.max_concurrent_renders.max(1)),
            conns: Mutex::default(),
            limits: limits.clone(),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, shared, stopped));
        info!(event = "metrics.listening", %local, "metrics listener on http://{local}/metrics");
        Ok(MetricsServer {
            requested: addr,
            local,
            exporter,
            limits,
            running: Some((stop, task)),
        })
    }

    /// The bound address (the port the OS chose when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `false` after [`MetricsServer::stop`], or after a failed rebind that
    /// could not bind the old address again.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Moves the listener to `addr` (a reload changed `[metrics] listen`). The
    /// new address is bound before the old one is closed; if it cannot be bound,
    /// the old one keeps serving and the error is returned. When the two overlap
    /// (same port, e.g. `127.0.0.1:9617` to `0.0.0.0:9617`), the old one is
    /// closed first and bound again if the new one fails.
    pub async fn rebind(&mut self, addr: SocketAddr) -> Result<(), ListenError> {
        if addr == self.requested && self.is_running() {
            return Ok(());
        }
        let err = match Self::bind(addr, self.exporter.clone(), self.limits.clone()) {
            Ok(new) => {
                self.stop().await;
                *self = new;
                return Ok(());
            }
            Err(e) => e,
        };
        let ListenError::Bind { source, .. } = &err;
        if source.kind() != io::ErrorKind::AddrInUse || addr.port() != self.local.port() {
            return Err(err);
        }
        self.stop().await;
        match Self::bind(addr, self.exporter.clone(), self.limits.clone()) {
            Ok(new) => {
                *self = new;
                Ok(())
            }
            Err(e) => {
                match Self::bind(self.requested, self.exporter.clone(), self.limits.clone()) {
                    Ok(old) => *self = old,
                    Err(again) => warn!("metrics listener: {again}; no metrics listener now"),
                }
                Err(e)
            }
        }
    }

    /// Stops accepting, closes idle connections at once and gives requests
    /// being answered a moment to finish. Meant to run last at shutdown.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(128)
}

struct Shared {
    exporter: Arc<Exporter>,
    limits: HttpLimits,
    renders: Semaphore,
    conns: Mutex<ConnTable>,
}

/// Open connections in accept order.
#[derive(Default)]
struct ConnTable {
    next_id: u64,
    slots: VecDeque<Slot>,
}

struct Slot {
    id: u64,
    /// Set once the connection's request head has been read.
    busy: Arc<AtomicBool>,
    abort: AbortHandle,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, ConnTable> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a connection's slot when its task ends, however it ends.
struct SlotGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut t = self.shared.conns();
        if let Some(i) = t.slots.iter().position(|s| s.id == self.id) {
            t.slots.remove(i);
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            r = listener.accept() => match r {
                Ok((tcp, peer)) => admit(&shared, &mut tasks, tcp, peer),
                Err(e) => {
                    debug!("metrics listener: accept: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    let slots = std::mem::take(&mut shared.conns().slots);
    for s in slots.iter().filter(|s| !s.busy.load(Relaxed)) {
        s.abort.abort();
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(STOP_GRACE, drain).await;
    tasks.shutdown().await;
}

/// Starts serving `tcp`, closing the oldest idle connection if the table is full
/// (or refusing `tcp` when every connection is answering a request).
fn admit(shared: &Arc<Shared>, tasks: &mut JoinSet<()>, tcp: TcpStream, peer: SocketAddr) {
    let mut table = shared.conns();
    let mut evicted = None;
    if table.slots.len() >= shared.limits.max_connections {
        match table.slots.iter().position(|s| !s.busy.load(Relaxed)) {
            Some(i) => evicted = table.slots.remove(i),
            None => {
                debug!(%peer, "metrics listener: every connection busy, refused");
                return;
            }
        }
    }
    let id = table.next_id;
    table.next_id += 1;
    let busy = Arc::new(AtomicBool::new(false));
    let guard = SlotGuard {
        shared: shared.clone(),
        id,
    };
    let abort = tasks.spawn(serve(tcp, peer, shared.clone(), busy.clone(), guard));
    table.slots.push_back(Slot { id, busy, abort });
    drop(table);
    if let Some(old) = evicted {
        debug!(%peer, "metrics listener full: closed the oldest idle connection");
        old.abort.abort();
    }
}

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    busy: Arc<AtomicBool>,
    _slot: SlotGuard,
) {
    let limits = shared.limits.clone();
    let service = service_fn(move |req| {
        busy.store(true, Relaxed);
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond(&shared, req).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(false)
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_request_bytes.max(8192))
        .max_header_size(limits.max_request_bytes);
    let conn = builder.serve_connection(TokioIo::new(tcp), service);
    match tokio::time::timeout(limits.connection_timeout, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(%peer, "metrics connection: {e}"),
        Err(_) => {
            debug!(%peer, "metrics connection: cut off after {:?}", limits.connection_timeout)
        }
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: &'static str) -> Reply {
    reply(status, "text/plain; charset=utf-8", body)
}

async fn respond(shared: &Arc<Shared>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/health" | "/status") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /health or /status\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/health" if shared.exporter.is_serving() => text(StatusCode::OK, "serving\n"),
        "/health" => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            rendered(shared, format.content_type(), move |e| {
                e.metrics(format).ok()
            })
            .await
        }
        _ => {
            let json = |e: &Exporter| serde_json::to_string(&e.status()).ok();
            rendered(shared, "application/json", json).await
        }
    }
}

/// Runs `render` on a blocking thread, at most `max_concurrent_renders` at once.
async fn rendered(
    shared: &Arc<Shared>,
    content_type: &'static str,
    render: impl FnOnce(&Exporter) -> Option<String> + Send + 'static,
) -> Reply {
    let failed = || text(StatusCode::INTERNAL_SERVER_ERROR, "cannot render\n");
    let Ok(_permit) = shared.renders.acquire().await else {
        return failed();
    };
    let exporter = shared.exporter.clone();
    match tokio::task::spawn_blocking(move || render(&exporter)).await {
        Ok(Some(body)) => reply(StatusCode::OK, content_type, body),
        Ok(None) | Err(_) => failed(),
    }
}
