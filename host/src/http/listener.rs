//! The listener: connections accepted under a cap, request heads read under a
//! deadline, and a clean stop that lets the requests in flight finish.
//!
//! `axum::serve` sets no header timeout and no connection cap, so a client that
//! trickles its headers holds a socket (and a task) for as long as it likes.
//! Here each connection is served by hyper's HTTP/1 builder with a timer, and a
//! connection over the cap is answered `503` with `Retry-After` and closed
//! without reading a byte of it.

use crate::config::limits::ServerLimits;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// A request body that must have arrived whole within a limit
/// (PORTICO_REQUEST_TIMEOUT_MS) from when its head was read.
pub struct DeadlineBody {
    inner: axum::body::Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    pub fn new(inner: axum::body::Body, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

/// A body not received in time; its text names the setting.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} ms (PORTICO_REQUEST_TIMEOUT_MS)")]
pub struct BodyTimeout(pub u128);

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        if let std::task::Poll::Ready(frame) = std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            return std::task::Poll::Ready(frame);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let ms = self.limit.as_millis();
            return std::task::Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(ms)))));
        }
        std::task::Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// How long a clean stop waits for the requests in flight.
const DRAIN: Duration = Duration::from_secs(30);

/// The answer to a connection over the cap: written whole, then the socket closes.
fn over_capacity() -> Vec<u8> {
    let body = r#"{"error":"overloaded","message":"too many open connections (PORTICO_MAX_CONNECTIONS); retry in a moment"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serve `app` on `listener` until `stop` resolves, then drain.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stop: impl std::future::Future<Output = ()>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(place) = open.clone().try_acquire_owned() else {
            crate::telemetry::metrics::connection_refused();
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A peer that goes away mid-request is no news for the log.
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(place);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still running after {} s of draining; stopping anyway",
            DRAIN.as_secs()
        );
    }
}

/// Answer a connection over the cap and close it, without reading its request.
async fn refuse(mut stream: TcpStream) {
    let answer = async {
        stream.write_all(&over_capacity()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), answer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_answer_declares_its_own_length() {
        let bytes = over_capacity();
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "overloaded");
    }
}
