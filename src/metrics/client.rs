//! A one-request HTTP/1.1 client (hyper's) for the `status` command: connect,
//! `GET`, read a bounded body, close. Every step is under one deadline.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("no complete answer from {addr} within {} s", .timeout.as_secs_f32())]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("HTTP exchange with {addr} failed: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("invalid request for {addr}: {reason}")]
    Request { addr: SocketAddr, reason: String },
    #[error("the answer of {addr} is larger than {limit} bytes")]
    TooLarge { addr: SocketAddr, limit: usize },
}

/// An HTTP answer: status, content type and the whole body.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// `GET path` on `addr` (with `Accept: accept` if given); the body is read up
/// to `max_body` bytes; everything within `timeout`.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
    timeout: Duration,
    max_body: usize,
) -> Result<Reply, ClientError> {
    match tokio::time::timeout(timeout, exchange(addr, path, accept, max_body)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout { addr, timeout }),
    }
}

async fn exchange(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
    max_body: usize,
) -> Result<Reply, ClientError> {
    let http = |source| ClientError::Http { addr, source };
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(http)?;
    let driver = tokio::spawn(conn);
    let mut req = Request::get(path).header(HOST, addr.to_string());
    if let Some(a) = accept {
        req = req.header(ACCEPT, a);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Request {
            addr,
            reason: e.to_string(),
        })?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(source) => ClientError::Http {
                    addr,
                    source: *source,
                },
                Err(e) if e.is::<LengthLimitError>() => ClientError::TooLarge {
                    addr,
                    limit: max_body,
                },
                Err(e) => ClientError::Request {
                    addr,
                    reason: e.to_string(),
                },
            })?
            .to_bytes();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }
    .await;
    driver.abort();
    result
}
