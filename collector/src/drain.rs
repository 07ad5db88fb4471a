//! Refusals reach the client: a request body a handler leaves unread (a refusal made from
//! the headers, a body over its limit) is read to its end and thrown away, up to a bound,
//! instead of being dropped. Dropping it makes the server close a connection (HTTP/1.1)
//! or reset a stream (HTTP/2) the client is still sending on, and the client sees a broken
//! pipe instead of the 401, 413 or 429 (with its Retry-After) meant for it.
//!
//! The bound keeps the cost of a refusal explicit: at most [`DRAIN_MAX_BYTES`] more are
//! read, within [`DRAIN_TIMEOUT`], never buffered; past either, the body is dropped as
//! before (a client that sends more than that after its answer is not one of ours).
//!
//! Architecture Invariant: nothing read here reaches a handler or the store.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use http_body_util::BodyExt;

/// Most bytes of an unread body read and discarded after its request was answered.
pub const DRAIN_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// How long that may take.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A request body that, dropped unfinished, is drained in the background.
pub struct Draining {
    inner: Option<Body>,
}

impl HttpBody for Draining {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        match self.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(HttpBody::size_hint)
            .unwrap_or_default()
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

async fn drain(mut body: Body) {
    let read = async {
        let mut seen: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > DRAIN_MAX_BYTES {
                    break;
                }
            }
        }
        seen
    };
    match tokio::time::timeout(DRAIN_TIMEOUT, read).await {
        Ok(bytes) => tracing::debug!(bytes, "unread request body drained after its answer"),
        Err(_) => tracing::debug!("unread request body dropped: drain timed out"),
    }
}

/// The middleware: every request's body becomes [`Draining`].
pub async fn layer(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    let request = request.map(|body| Body::new(Draining { inner: Some(body) }));
    next.run(request).await
}
