//! The HTTP transport: the original's `HttpClient` call — one `POST` per attempt, the
//! answer read into success or a classified error.
//!
//! Each attempt drives its HTTP/1.1 connection (hyper's `client::conn::http1`) in the
//! caller's own task: the request is written, the answer read, and the connection put back
//! in the manager's pool of idle ones, all without handing anything to another task. A
//! general client (reqwest, used here before) runs every connection in a task of its own
//! and passes each request to it over a channel: two task wake-ups per request, often
//! across threads.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::delivery::Answer;
use crate::base_url::BaseUrl;
use crate::error::{ConfigError, ReplenishmentError};
use crate::retry;
use crate::wire;

/// The most idle connections kept for reuse: more than any lab run keeps in flight
/// against one API, and a bound on the sockets a long-lived manager can hold.
const MAX_IDLE: usize = 1024;

/// The HTTP transport: the original's `HttpClient` call.
#[derive(Debug, Clone)]
pub(super) struct Http {
    /// Where the API lives; also names the server in connect errors.
    pub(super) base_url: BaseUrl,
    /// The request target (the endpoint's path) and the `Host` header, built once.
    pub(super) path: Uri,
    pub(super) host_header: HeaderValue,
    /// Where to connect: the URL's host (an IP literal needs no lookup) and port.
    pub(super) host: String,
    pub(super) port: u16,
    /// Idle kept-alive connections, shared by clones; `None` when every call opens its own
    /// connection, as the original's new `HttpClient` per call did.
    idle: Option<Arc<Mutex<Vec<Connection>>>>,
}

/// One HTTP/1.1 connection: the handle requests are sent on, and the connection's state
/// machine, which only makes progress while someone polls it — here the attempt using it.
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: http1::Connection<TokioIo<TcpStream>, Full<Bytes>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

/// The parts of an answer the client looks at.
struct Response {
    status: u16,
    headers: HeaderMap,
    /// At most [`wire::MAX_REJECTION_BODY`]; `None` if it could not be read.
    body: Option<Bytes>,
}

/// An exchange that broke, and whether the request can have reached the server.
struct Broken {
    error: hyper::Error,
    /// The connection closed before the request was written (a kept-alive connection the
    /// server had closed meanwhile): safe to send again on a new one.
    unsent: bool,
}

impl Http {
    /// One `POST` of `item_code` under `request_id`. `guarded` carries, under a retry
    /// policy, the idempotency key's header value and the time left: then the attempt may
    /// take no longer and the deadline header is sent. Without it the request is the
    /// original's, bounded by the client's `timeout`.
    pub(super) async fn attempt(
        &self,
        item_code: &str,
        request_id: &HeaderValue,
        guarded: Option<(&HeaderValue, Duration)>,
        timeout: Duration,
    ) -> Answer {
        let limit = guarded.map_or(timeout, |(_, remaining)| remaining);
        let request = || self.request(item_code, request_id, guarded);
        // The whole exchange, connecting included, under one deadline: a connect that runs
        // out of time is "no answer in time", not "refused".
        let response = match tokio::time::timeout(limit, self.exchange(request)).await {
            Err(_) => return Answer::plain(Err(ReplenishmentError::TimedOut { after: timeout })),
            Ok(Err(error)) => return Answer::plain(Err(error)),
            Ok(Ok(response)) => response,
        };
        let header = |name| {
            response
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let replayed = header(wire::IDEMPOTENT_REPLAYED_HEADER).is_some_and(wire::is_replayed);
        if (200..300).contains(&response.status) {
            return Answer {
                result: Ok(()),
                retry_after: None,
                replayed,
                republished: 0,
            };
        }
        let retry_after = header(RETRY_AFTER.as_str())
            .and_then(|v| wire::parse_retry_after(v, SystemTime::now()));
        Answer {
            result: Err(rejection(&response)),
            retry_after,
            replayed,
            republished: 0,
        }
    }

    /// The request of one attempt.
    fn request(
        &self,
        item_code: &str,
        request_id: &HeaderValue,
        guarded: Option<(&HeaderValue, Duration)>,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::from(wire::form_body(item_code))));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host_header.clone());
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(wire::FORM_CONTENT_TYPE),
        );
        headers.insert(wire::REQUEST_ID_HEADER, request_id.clone());
        if let Some((key, remaining)) = guarded {
            let budget = retry::request_budget(remaining);
            headers.insert(wire::IDEMPOTENCY_KEY_HEADER, key.clone());
            if let Ok(value) = HeaderValue::from_str(&wire::request_budget_value(budget)) {
                headers.insert(wire::REQUEST_BUDGET_HEADER, value);
            }
        }
        request
    }

    /// Sends the request on an idle connection, or a new one. A kept-alive connection the
    /// server closed before the request went out is dropped and the request sent again on
    /// a new connection (as general clients do); once it may have been written it never is.
    async fn exchange(
        &self,
        request: impl Fn() -> Request<Full<Bytes>>,
    ) -> Result<Response, ReplenishmentError> {
        loop {
            let (mut connection, reused) = match self.take_idle() {
                Some(connection) => (connection, true),
                None => (self.connect().await?, false),
            };
            match connection.round_trip(request()).await {
                Ok((response, reusable)) => {
                    if reusable {
                        self.put_idle(connection);
                    }
                    return Ok(response);
                }
                Err(broken) if broken.unsent && reused => continue,
                Err(broken) => {
                    return Err(ReplenishmentError::Transport {
                        source: broken.error.into(),
                    });
                }
            }
        }
    }

    async fn connect(&self) -> Result<Connection, ReplenishmentError> {
        let refused = |source: crate::error::BoxError| ReplenishmentError::Connect {
            url: self.base_url.to_string(),
            source,
        };
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| refused(e.into()))?;
        // An order is one small write; Nagle's algorithm would hold it back for the ACK
        // of the previous one.
        stream.set_nodelay(true).map_err(|e| refused(e.into()))?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| refused(e.into()))?;
        Ok(Connection { sender, driver })
    }

    /// The most recently used idle connection that is still open.
    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.as_ref()?.lock().ok()?;
        while let Some(mut connection) = idle.pop() {
            if connection.is_open() {
                return Some(connection);
            }
        }
        None
    }

    fn put_idle(&self, connection: Connection) {
        if let Some(idle) = &self.idle
            && let Ok(mut idle) = idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(connection);
        }
    }
}

impl Connection {
    /// Sends `request` and reads the whole answer, polling the connection alongside.
    /// Returns whether the connection can carry another request.
    async fn round_trip(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(Response, bool), Broken> {
        let Connection { sender, driver } = self;
        let exchange = async {
            sender.ready().await.map_err(|error| Broken {
                unsent: true,
                error,
            })?;
            let response = sender.send_request(request).await.map_err(|error| Broken {
                unsent: error.is_canceled(),
                error,
            })?;
            let (parts, body) = response.into_parts();
            let body = read_body(body).await;
            let response = Response {
                status: parts.status.as_u16(),
                body,
                headers: parts.headers,
            };
            Ok::<_, Broken>(response)
        };
        tokio::pin!(exchange);
        let mut closed = false;
        loop {
            tokio::select! {
                biased;
                response = &mut exchange => {
                    let response = response?;
                    let keep_alive = !closed
                        && response.body.is_some()
                        && !response.headers.get(CONNECTION).is_some_and(|v| {
                            v.to_str().is_ok_and(|v| v.eq_ignore_ascii_case("close"))
                        });
                    return Ok((response, keep_alive));
                }
                // The connection ended (closed, or broken): the exchange fails or completes
                // with what it had, and is taken next time round.
                _ = &mut *driver, if !closed => closed = true,
            }
        }
    }

    /// Whether an idle connection is still open: its state machine is polled once, without
    /// waiting, so a close or reset that arrived while it sat idle is noticed now.
    fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.driver).poll(&mut cx) {
            Poll::Pending => !self.sender.is_closed(),
            Poll::Ready(_) => false,
        }
    }
}

/// Reads an answer's body, at most [`wire::MAX_REJECTION_BODY`]; `None` if it broke off or
/// is longer (the connection is then not reused: the rest is still on it).
async fn read_body(mut body: hyper::body::Incoming) -> Option<Bytes> {
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            read.extend_from_slice(&data);
            if read.len() > wire::MAX_REJECTION_BODY {
                return None;
            }
        }
    }
    Some(read.into())
}

/// The HTTP client for `base_url`, with the original's connection behaviour when
/// `new_connection_per_request`: then no connection is kept, so each call connects anew and
/// the server sees one connection per request.
///
/// No proxy is taken from the environment (one would sit between the load and the API and
/// silently change every measurement), and a redirect is not followed (the API answers 201
/// or an error; following one would turn the POST into a GET elsewhere): a 3xx is reported
/// as what it is.
pub(super) fn http_transport(
    base_url: BaseUrl,
    new_connection_per_request: bool,
) -> Result<Http, ConfigError> {
    let endpoint = base_url.replenishment_url();
    let invalid = |reason: String| ConfigError::InvalidUrl {
        url: base_url.to_string(),
        reason,
    };
    let host = match endpoint.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(invalid("it has no host".into())),
    };
    let port = endpoint
        .port_or_known_default()
        .ok_or_else(|| invalid("it has no port".into()))?;
    let authority = &endpoint[url::Position::BeforeHost..url::Position::AfterPort];
    let host_header = HeaderValue::from_str(authority).map_err(|e| invalid(e.to_string()))?;
    let path = Uri::try_from(&endpoint[url::Position::BeforePath..url::Position::AfterQuery])
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Http {
        base_url,
        path,
        host_header,
        host,
        port,
        idle: (!new_connection_per_request).then(Default::default),
    })
}

/// Turns a non-2xx answer into [`ReplenishmentError::Rejected`], with the problem details
/// of its body. A body that could not be read does not hide the status: the refusal is
/// reported without details.
fn rejection(response: &Response) -> ReplenishmentError {
    let content_type = response
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let body = response.body.as_deref().unwrap_or_default();
    let (title, detail) = wire::parse_rejection_body(content_type, body);
    ReplenishmentError::Rejected {
        status: response.status,
        title,
        detail,
    }
}
