//! Telling the client the truth about its connection.
//!
//! hyper keeps an HTTP/1.1 connection open after a response only when the request's body
//! was read to its end (or arrived in the same read as the headers): it cannot know where
//! the next request starts otherwise, so it closes the connection. A response that did
//! not read the body — a 404, 405, 415 or 413 answered from the headers, a 504 for a
//! hopeless deadline, a 408 for a stalled upload — would then be followed by a close the
//! client was not told about, and a keep-alive client's next request on that connection
//! fails with a broken pipe. So every such response says `Connection: close`: the client
//! opens a new connection instead of writing into a dead one. A response after a fully
//! read body (201, 400, 409, 422, and the 503 of admission control, which is decided
//! after the body) keeps the connection open.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// The layer: watches whether the handler read the request body to its end and, if it
/// did not, adds `Connection: close` to the response.
pub async fn close_if_body_unread(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        // No body at all (a GET, or `Content-Length: 0`): nothing to leave unread.
        return next.run(Request::from_parts(parts, body)).await;
    }
    let finished = Arc::new(AtomicBool::new(false));
    let body = Body::new(Watched {
        inner: body,
        finished: Arc::clone(&finished),
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if !finished.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that notes when it has been read to its end.
struct Watched {
    inner: Body,
    finished: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn reading_to_the_end_is_noticed() {
        let finished = Arc::new(AtomicBool::new(false));
        let body = Body::new(Watched {
            inner: Body::from("=123"),
            finished: Arc::clone(&finished),
        });
        assert!(!finished.load(Ordering::Acquire));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"=123");
        assert!(finished.load(Ordering::Acquire));
    }
}
