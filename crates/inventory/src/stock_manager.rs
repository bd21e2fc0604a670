//! [`StockManager`]: the original `StockManager.RequestStockReplenishment`, over HTTP.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue};

use crate::base_url::BaseUrl;
use crate::error::{ConfigError, ReplenishmentError};
use crate::wire;

/// Where the purchasing API listens unless told otherwise (its own default bind address).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Name of the environment variable that overrides [`DEFAULT_URL`] in the CLI (and in any
/// tool that wants the same convention).
pub const PURCHASING_API_URL: &str = "PURCHASING_API_URL";

/// The original's `HttpClient.Timeout`: how long one call may take in total.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh request id (a UUID v4), as sent in `X-Request-Id`.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Asks the purchasing API to replenish stock: one `POST` per item code.
///
/// Cheap to clone (the HTTP client inside is reference-counted), so concurrent callers can
/// share one.
#[derive(Debug, Clone)]
pub struct StockManager {
    /// Where the API lives; also names the server in connect errors.
    base_url: BaseUrl,
    /// The endpoint, built once from `base_url`.
    endpoint: reqwest::Url,
    /// The total deadline of one call (connect, send, answer); reported in `TimedOut`.
    timeout: Duration,
    /// Whether every call opens its own TCP connection, as the original did.
    new_connection_per_request: bool,
    /// One client for the manager's life. Even when every call gets a new connection, the
    /// client (its configuration, resolver and connector) is built once, not per call.
    client: reqwest::Client,
}

/// Settings for a [`StockManager`]; see [`StockManager::builder`].
#[derive(Debug, Clone)]
pub struct StockManagerBuilder {
    base_url: BaseUrl,
    timeout: Duration,
    new_connection_per_request: bool,
}

impl StockManager {
    /// A manager with the original's behaviour: a 30 s timeout and a new TCP connection per
    /// call. `base_url` must be an `http://` URL, e.g. [`DEFAULT_URL`].
    pub fn new(base_url: &str) -> Result<Self, ConfigError> {
        Self::builder(BaseUrl::parse(base_url)?).build()
    }

    /// Starts from the original's behaviour; change it with the builder's methods.
    pub fn builder(base_url: BaseUrl) -> StockManagerBuilder {
        StockManagerBuilder {
            base_url,
            timeout: DEFAULT_TIMEOUT,
            new_connection_per_request: true,
        }
    }

    pub fn base_url(&self) -> &BaseUrl {
        &self.base_url
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn new_connection_per_request(&self) -> bool {
        self.new_connection_per_request
    }

    /// Requests replenishment of `item_code` under a fresh request id.
    ///
    /// Like the original, it succeeds on any 2xx (the API answers 201 Created) and fails on
    /// everything else. The item code is sent as given: the server judges it.
    pub async fn request_stock_replenishment(
        &self,
        item_code: &str,
    ) -> Result<(), ReplenishmentError> {
        self.request_stock_replenishment_with_id(item_code, &new_request_id())
            .await
    }

    /// Same as [`StockManager::request_stock_replenishment`], under the caller's
    /// `request_id` (sent as `X-Request-Id`), so the caller can record and correlate it.
    pub async fn request_stock_replenishment_with_id(
        &self,
        item_code: &str,
        request_id: &str,
    ) -> Result<(), ReplenishmentError> {
        let id = HeaderValue::from_str(request_id).map_err(|_| {
            ReplenishmentError::InvalidRequestId {
                request_id: request_id.to_owned(),
            }
        })?;
        let response = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, wire::FORM_CONTENT_TYPE)
            .header(wire::REQUEST_ID_HEADER, id)
            .body(wire::form_body(item_code))
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(rejection(response).await)
    }

    /// Sorts a failed exchange by what the operator should do about it. A timeout comes
    /// first: a connect attempt that runs out of time is "no answer in time", not "refused".
    fn classify(&self, error: reqwest::Error) -> ReplenishmentError {
        if error.is_timeout() {
            ReplenishmentError::TimedOut {
                after: self.timeout,
            }
        } else if error.is_connect() {
            ReplenishmentError::Connect {
                url: self.base_url.to_string(),
                source: error,
            }
        } else {
            ReplenishmentError::Transport { source: error }
        }
    }
}

impl StockManagerBuilder {
    /// The total deadline of one call: connect, send and the complete answer.
    /// Default [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `true` (the default, as the original): every call opens a new TCP connection and
    /// closes it afterwards. `false`: idle connections are kept and reused.
    pub fn new_connection_per_request(mut self, yes: bool) -> Self {
        self.new_connection_per_request = yes;
        self
    }

    pub fn build(self) -> Result<StockManager, ConfigError> {
        let mut client = reqwest::Client::builder()
            .timeout(self.timeout)
            // The API answers 201 or an error, never a redirect; following one would turn the
            // POST into a GET elsewhere. A 3xx is reported as what it is.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy picked up from the environment would sit between the load and the API
            // and silently change every measurement; the API is addressed directly.
            .no_proxy();
        if self.new_connection_per_request {
            // The original built a new HttpClient per call, so each call paid a TCP handshake
            // and the server saw one connection per request. Keeping no idle connection gives
            // that behaviour with one client: after each answer the connection is closed
            // instead of pooled, so the next call must connect anew.
            client = client.pool_max_idle_per_host(0);
        }
        let client = client
            .build()
            .map_err(|source| ConfigError::Client { source })?;
        Ok(StockManager {
            endpoint: self.base_url.replenishment_url(),
            base_url: self.base_url,
            timeout: self.timeout,
            new_connection_per_request: self.new_connection_per_request,
            client,
        })
    }
}

/// Turns a non-2xx answer into [`ReplenishmentError::Rejected`], reading at most
/// [`wire::MAX_REJECTION_BODY`] of its body for the problem details. A body that cannot be
/// read does not hide the status: the refusal is reported without details.
async fn rejection(mut response: reqwest::Response) -> ReplenishmentError {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while body.len() < wire::MAX_REJECTION_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(_) => {
                body.clear();
                break;
            }
        }
    }
    let (title, detail) = wire::parse_rejection_body(content_type.as_deref(), &body);
    ReplenishmentError::Rejected {
        status,
        title,
        detail,
    }
}

#[cfg(test)]
mod tests {
    //! Real sockets on 127.0.0.1 with hand-written peers: each failure class is produced the
    //! way it happens in the field, without the purchasing API.

    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::thread;
    use std::time::Instant;

    use super::*;

    /// Upper bound for any socket wait in these tests, so a regression fails instead of hanging.
    const LIMIT: Duration = Duration::from_secs(10);

    /// Reads one HTTP/1.1 request (headers and a `Content-Length` body); `None` at EOF.
    fn read_request(stream: &mut TcpStream) -> Option<String> {
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if data.len() >= end + 4 + length {
                    return Some(String::from_utf8_lossy(&data[..end + 4 + length]).into_owned());
                }
            }
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// A peer that accepts connections for at most [`LIMIT`] and answers every request on
    /// each with `response`, or closes after reading it when `response` is `None`. Sends the
    /// requests it read, and the number of connections accepted, to the test.
    struct Peer {
        addr: SocketAddr,
        requests: mpsc::Receiver<String>,
        connections: mpsc::Receiver<usize>,
    }

    fn peer(response: Option<String>) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let (requests_tx, requests) = mpsc::channel();
        let (connections_tx, connections) = mpsc::channel();
        thread::spawn(move || {
            let deadline = Instant::now() + LIMIT;
            let mut accepted = 0;
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        accepted += 1;
                        let _ = connections_tx.send(accepted);
                        stream.set_nonblocking(false).unwrap();
                        let requests_tx = requests_tx.clone();
                        let response = response.clone();
                        thread::spawn(move || {
                            while let Some(request) = read_request(&mut stream) {
                                let _ = requests_tx.send(request);
                                let Some(response) = &response else { return };
                                if stream.write_all(response.as_bytes()).is_err() {
                                    return;
                                }
                            }
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Peer {
            addr,
            requests,
            connections,
        }
    }

    fn manager(addr: SocketAddr) -> StockManager {
        StockManager::new(&format!("http://{addr}")).unwrap()
    }

    const CREATED: &str = "HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";

    /// A complete response with `body` and the right `content-length`.
    fn response(status_line: &str, content_type: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status_line}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn sends_the_originals_request_and_accepts_201() {
        let peer = peer(Some(CREATED.to_owned()));
        let result = manager(peer.addr)
            .request_stock_replenishment_with_id("123", "req-1")
            .await;
        assert!(result.is_ok(), "{result:?}");
        let request = peer.requests.recv_timeout(LIMIT).unwrap();
        let lower = request.to_ascii_lowercase();
        assert!(
            request.starts_with("POST /api/StockReplenishmentRequests HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            lower.contains("\r\ncontent-type: application/x-www-form-urlencoded\r\n"),
            "{request}"
        );
        assert!(lower.contains("\r\ncontent-length: 4\r\n"), "{request}");
        assert!(lower.contains("\r\nx-request-id: req-1\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\n=123"), "{request}");
    }

    #[tokio::test]
    async fn a_fresh_request_id_is_sent_by_default() {
        let peer = peer(Some(CREATED.to_owned()));
        manager(peer.addr)
            .request_stock_replenishment("123")
            .await
            .unwrap();
        let request = peer
            .requests
            .recv_timeout(LIMIT)
            .unwrap()
            .to_ascii_lowercase();
        let id = request
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .expect("an x-request-id header");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }

    #[tokio::test]
    async fn any_2xx_is_success() {
        let peer = peer(Some("HTTP/1.1 204 No Content\r\n\r\n".to_owned()));
        assert!(
            manager(peer.addr)
                .request_stock_replenishment("123")
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_problem_document_is_read_into_the_rejection() {
        let peer = peer(Some(response(
            "400 Bad Request",
            "application/problem+json",
            r#"{"type":"about:blank","title":"Invalid item code","status":400,
                "detail":"it contains a control character"}"#,
        )));
        let error = manager(peer.addr)
            .request_stock_replenishment("a\tb")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "rejected");
        assert!(
            matches!(&error, ReplenishmentError::Rejected { status: 400, title: Some(t), detail: Some(d) }
                if t == "Invalid item code" && d == "it contains a control character"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "the purchasing API rejected the request: 400 Bad Request: it contains a control character"
        );
        assert!(
            peer.requests
                .recv_timeout(LIMIT)
                .unwrap()
                .ends_with("\r\n\r\n=a%09b")
        );
    }

    #[tokio::test]
    async fn any_other_refusal_body_is_tolerated() {
        let peer = peer(Some(response(
            "502 Bad Gateway",
            "text/html",
            "<h1>upstream down</h1>",
        )));
        let error = manager(peer.addr)
            .request_stock_replenishment("123")
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                ReplenishmentError::Rejected {
                    status: 502,
                    title: None,
                    detail: None
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "the purchasing API rejected the request: 502 Bad Gateway"
        );
    }

    #[tokio::test]
    async fn a_redirect_is_a_rejection_not_followed() {
        let peer = peer(Some(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\n\r\n"
                .to_owned(),
        ));
        let error = manager(peer.addr)
            .request_stock_replenishment("123")
            .await
            .unwrap_err();
        assert_eq!(error.status(), Some(302), "{error:?}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_after_the_configured_deadline() {
        // Accepts (the kernel completes the handshake from the backlog) and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = BaseUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let manager = StockManager::builder(url)
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let started = Instant::now();
        let error = manager
            .request_stock_replenishment("123")
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(error.kind(), "timed_out", "{error:?}");
        assert_eq!(
            error.to_string(),
            "no answer from the purchasing API within 200ms (timed out)"
        );
        drop(listener);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let error = manager(addr)
            .request_stock_replenishment("123")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "connect", "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "could not connect to the purchasing API at http://{addr}: connection refused \
                 — is purchasing-api running?"
            )
        );
    }

    #[tokio::test]
    async fn a_connection_closed_without_an_answer_is_a_transport_error() {
        let peer = peer(None);
        let error = manager(peer.addr)
            .request_stock_replenishment("123")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "transport", "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with("the request to the purchasing API failed: "),
            "{message}"
        );
        assert!(
            !message.contains("error sending request"),
            "root cause expected: {message}"
        );
        // The request did arrive: after a transport failure the order's fate is unknown.
        assert!(peer.requests.recv_timeout(LIMIT).is_ok());
    }

    #[tokio::test]
    async fn an_unsendable_request_id_is_refused_before_sending() {
        let peer = peer(Some(CREATED.to_owned()));
        let error = manager(peer.addr)
            .request_stock_replenishment_with_id("123", "a\nb")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "invalid_request_id");
        assert!(
            peer.connections
                .recv_timeout(Duration::from_millis(200))
                .is_err()
        );
    }

    async fn connections_for_two_calls(new_connection_per_request: bool) -> usize {
        let peer = peer(Some(CREATED.to_owned()));
        let url = BaseUrl::parse(&format!("http://{}", peer.addr)).unwrap();
        let manager = StockManager::builder(url)
            .new_connection_per_request(new_connection_per_request)
            .build()
            .unwrap();
        assert_eq!(
            manager.new_connection_per_request(),
            new_connection_per_request
        );
        manager.request_stock_replenishment("1").await.unwrap();
        manager.request_stock_replenishment("2").await.unwrap();
        assert_eq!(peer.requests.iter().take(2).count(), 2);
        peer.connections.try_iter().last().unwrap_or(0)
    }

    #[tokio::test]
    async fn by_default_each_call_opens_its_own_connection_like_the_original() {
        assert_eq!(connections_for_two_calls(true).await, 2);
        assert!(manager("127.0.0.1:1".parse().unwrap()).new_connection_per_request());
    }

    #[tokio::test]
    async fn connections_can_be_reused_instead() {
        assert_eq!(connections_for_two_calls(false).await, 1);
    }

    #[test]
    fn defaults_are_the_originals() {
        let manager = StockManager::new(DEFAULT_URL).unwrap();
        assert_eq!(manager.timeout(), Duration::from_secs(30));
        assert_eq!(manager.base_url().as_str(), "http://127.0.0.1:8080");
        assert_eq!(
            manager.endpoint.as_str(),
            "http://127.0.0.1:8080/api/StockReplenishmentRequests"
        );
    }

    #[test]
    fn construction_rejects_unusable_urls() {
        assert!(matches!(
            StockManager::new("https://vm"),
            Err(ConfigError::HttpsNotSupported { .. })
        ));
        assert!(matches!(
            StockManager::new("vm:8080"),
            Err(ConfigError::InvalidUrl { .. })
        ));
    }
}
