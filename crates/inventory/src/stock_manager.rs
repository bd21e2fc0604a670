//! [`StockManager`]: the original `StockManager.RequestStockReplenishment`, over HTTP or —
//! the article series' messaging variant — over AMQP (see [`crate::amqp`]); and, opt-in,
//! with retries made safe by an idempotency key (see [`crate::retry`]).
//!
//! One type for both transports, so a caller (the CLI, the load tester) builds the manager
//! for the transport it was given and then makes the same call, gets the same
//! [`Delivery`] story and the same error type back.

use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use tokio::time::Instant;

use crate::amqp::{DeliveryMode, Publisher};
use crate::amqp_url::AmqpUrl;
use crate::base_url::BaseUrl;
use crate::error::{ConfigError, NOT_A_HEADER_VALUE, ReplenishmentError};
use crate::retry::{self, Jitter, RetryBudget, RetryPolicy};
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

/// Asks the purchasing side to replenish stock: over HTTP one `POST` per item code to the
/// purchasing API ([`StockManager::builder`]); over AMQP one message per item code to the
/// queue the purchasing worker consumes ([`StockManager::amqp_builder`]).
///
/// By default exactly as the original: one attempt, no retry. With a [`RetryPolicy`]
/// ([`StockManagerBuilder::retry_policy`]) a failed attempt may be followed by others,
/// every one carrying the same idempotency key — over HTTP the `Idempotency-Key` header and
/// the time left (`X-Request-Budget-Ms`), over AMQP (reliable delivery only) the same
/// `message_id`.
///
/// Cheap to clone (the HTTP client and the AMQP session inside are reference-counted), so
/// concurrent callers can share one; clones share the retry budget and, over AMQP, the
/// connection too.
#[derive(Debug, Clone)]
pub struct StockManager {
    /// What carries the request: the HTTP client or the AMQP publisher.
    transport: Transport,
    /// The total deadline of one call (over HTTP connect, send, answer; over AMQP connect,
    /// declare, publish, confirm; under a retry policy all its attempts and waits);
    /// reported in the timeout errors.
    timeout: Duration,
    /// Whether every call opens its own connection, as the original did.
    new_connection_per_request: bool,
    /// The retry policy and its budget when retries are on. `None` (the default) sends each
    /// request exactly once and without the idempotency and deadline headers: the faithful
    /// baseline.
    retry: Option<Retry>,
}

/// The two ways an order travels.
#[derive(Debug, Clone)]
enum Transport {
    Http(Http),
    Amqp(Publisher),
}

/// The HTTP transport: the original's `HttpClient` call.
#[derive(Debug, Clone)]
struct Http {
    /// Where the API lives; also names the server in connect errors.
    base_url: BaseUrl,
    /// The endpoint, built once from `base_url`.
    endpoint: reqwest::Url,
    /// One client for the manager's life. Even when every call gets a new connection, the
    /// client (its configuration, resolver and connector) is built once, not per call.
    client: reqwest::Client,
}

/// A retry policy in force, with the budget it draws on.
#[derive(Debug, Clone)]
struct Retry {
    policy: RetryPolicy,
    /// Shared by every clone of the manager (it is an `Arc` inside).
    budget: RetryBudget,
}

/// Settings for a [`StockManager`]; see [`StockManager::builder`] and
/// [`StockManager::amqp_builder`].
#[derive(Debug, Clone)]
pub struct StockManagerBuilder {
    target: Target,
    timeout: Duration,
    new_connection_per_request: bool,
    retry_policy: Option<RetryPolicy>,
    retry_budget: Option<RetryBudget>,
}

/// Where a manager being built sends its orders.
#[derive(Debug, Clone)]
enum Target {
    Http(BaseUrl),
    Amqp(AmqpUrl, DeliveryMode),
}

/// What became of one logical request ([`StockManager::replenish`]): the result, and how
/// it was reached.
#[derive(Debug)]
pub struct Delivery {
    /// Success, or the last attempt's error (of the same kinds as without retries).
    pub result: Result<(), ReplenishmentError>,
    /// HTTP requests (or AMQP publishes) made for it: always 1 without a retry policy,
    /// `1..=max_attempts` under one, 0 when nothing could be sent (a request id that is not
    /// a valid header value).
    pub attempts: u32,
    /// A retry was due (a retryable failure, attempts and time left) but the retry budget
    /// had no token for it, so the last error was returned.
    pub budget_denied: bool,
    /// A retry was due but the wait before it (backoff, at least `Retry-After`) would have
    /// run past the deadline or left too little time for another attempt, so the last
    /// error was returned at once instead of after a pointless wait. (Also set when the
    /// last attempt itself ran into the deadline and timed out.)
    pub deadline_denied: bool,
    /// The final answer carried `Idempotent-Replayed: true`: the server answered from the
    /// outcome of an earlier attempt with the same key (e.g. one whose answer was lost)
    /// instead of placing the order again.
    pub replayed: bool,
    /// The logical request's idempotency key, the same on every attempt: over HTTP the
    /// `Idempotency-Key` (on the wire it is quoted), sent only under a retry policy; over
    /// AMQP with reliable delivery the message's `message_id`, always set. `None` otherwise,
    /// or when nothing was sent.
    pub idempotency_key: Option<uuid::Uuid>,
    /// How long the final attempt took, from sending to its answer (or failure): the
    /// server's own response time, without the backoff waits between attempts. Over AMQP
    /// the publish latency: connecting when needed, publishing and (reliable) the confirm.
    pub last_attempt: Duration,
}

impl Delivery {
    fn nothing_sent(error: ReplenishmentError) -> Self {
        Delivery {
            result: Err(error),
            attempts: 0,
            budget_denied: false,
            deadline_denied: false,
            replayed: false,
            idempotency_key: None,
            last_attempt: Duration::ZERO,
        }
    }
}

/// The answer to one attempt, with what the retry loop needs from its headers.
struct Answer {
    result: Result<(), ReplenishmentError>,
    /// The server's `Retry-After`, on a refusal.
    retry_after: Option<Duration>,
    replayed: bool,
}

impl StockManager {
    /// A manager with the original's behaviour: a 30 s timeout and a new TCP connection per
    /// call. `base_url` must be an `http://` URL, e.g. [`DEFAULT_URL`].
    pub fn new(base_url: &str) -> Result<Self, ConfigError> {
        Self::builder(BaseUrl::parse(base_url)?).build()
    }

    /// Over HTTP, starting from the original's behaviour; change it with the builder's
    /// methods.
    pub fn builder(base_url: BaseUrl) -> StockManagerBuilder {
        StockManagerBuilder {
            target: Target::Http(base_url),
            timeout: DEFAULT_TIMEOUT,
            new_connection_per_request: true,
            retry_policy: None,
            retry_budget: None,
        }
    }

    /// Over AMQP, publishing to the broker at `url` with delivery `mode` (see
    /// [`crate::amqp`] for what each mode declares, sends and counts as success). Starts
    /// with a 30 s timeout, no retries and — unlike the original, which connected per call
    /// — one connection reused by every call and every clone; ask for the original's with
    /// [`StockManagerBuilder::new_connection_per_request`].
    pub fn amqp_builder(url: AmqpUrl, mode: DeliveryMode) -> StockManagerBuilder {
        StockManagerBuilder {
            target: Target::Amqp(url, mode),
            timeout: DEFAULT_TIMEOUT,
            new_connection_per_request: false,
            retry_policy: None,
            retry_budget: None,
        }
    }

    /// The purchasing API's URL, when the manager talks HTTP.
    pub fn base_url(&self) -> Option<&BaseUrl> {
        match &self.transport {
            Transport::Http(http) => Some(&http.base_url),
            Transport::Amqp(_) => None,
        }
    }

    /// The broker's URL, when the manager publishes over AMQP.
    pub fn amqp_url(&self) -> Option<&AmqpUrl> {
        match &self.transport {
            Transport::Http(_) => None,
            Transport::Amqp(publisher) => Some(publisher.url()),
        }
    }

    /// The delivery mode, when the manager publishes over AMQP.
    pub fn delivery_mode(&self) -> Option<DeliveryMode> {
        match &self.transport {
            Transport::Http(_) => None,
            Transport::Amqp(publisher) => Some(publisher.mode()),
        }
    }

    /// Where the orders go, for people: the API's or the broker's URL (password hidden).
    pub fn target(&self) -> String {
        match &self.transport {
            Transport::Http(http) => http.base_url.to_string(),
            Transport::Amqp(publisher) => publisher.url().to_string(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn new_connection_per_request(&self) -> bool {
        self.new_connection_per_request
    }

    /// The retry policy, when retries are on.
    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.retry.as_ref().map(|r| &r.policy)
    }

    /// The retry budget this manager (and its clones) draw on, when retries are on.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.retry.as_ref().map(|r| &r.budget)
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
    /// Under a retry policy this is [`StockManager::replenish`]'s result.
    pub async fn request_stock_replenishment_with_id(
        &self,
        item_code: &str,
        request_id: &str,
    ) -> Result<(), ReplenishmentError> {
        self.replenish(item_code, request_id).await.result
    }

    /// One logical request for `item_code` under `request_id`, with the story of how it
    /// went: how many attempts, whether a retry was refused by the budget or the deadline,
    /// whether the server replayed an earlier outcome.
    ///
    /// Without a retry policy: one attempt, exactly the original's request.
    ///
    /// Under a policy, every attempt carries the same `X-Request-Id`, the same
    /// `Idempotency-Key` (a fresh v4 UUID per call) and `X-Request-Budget-Ms`, the time
    /// left of the manager's timeout minus a margin. The timeout bounds the whole call —
    /// attempts and waits — and each attempt may use all the time left. After a failure
    /// that [`retry::is_retryable`] accepts, while attempts remain, the call waits
    /// (full-jitter backoff, plus the server's `Retry-After` if any) and tries again — unless
    /// the wait would leave no time for another attempt, or the retry budget has no token;
    /// then it returns the last error at once.
    ///
    /// Over AMQP the same holds with a publish for an HTTP request: the request id goes in
    /// the message (reliable mode; a faithful message carries nothing but the code), the
    /// idempotency key is the `message_id` — one per call, always set in reliable mode — and
    /// retries are allowed in reliable mode only ([`StockManagerBuilder::build`]).
    pub async fn replenish(&self, item_code: &str, request_id: &str) -> Delivery {
        // One rule for request ids whatever the transport, so an id that correlates over
        // one correlates over the other.
        let Ok(id) = HeaderValue::from_str(request_id) else {
            return Delivery::nothing_sent(ReplenishmentError::InvalidRequestId {
                request_id: request_id.to_owned(),
                why: NOT_A_HEADER_VALUE,
            });
        };
        let message_id =
            (self.delivery_mode() == Some(DeliveryMode::Reliable)).then(uuid::Uuid::new_v4);
        let Some(retry) = &self.retry else {
            let sent = Instant::now();
            let answer = self
                .attempt(item_code, &id, message_id.as_ref(), None)
                .await;
            return Delivery {
                result: answer.result,
                attempts: 1,
                budget_denied: false,
                deadline_denied: false,
                replayed: answer.replayed,
                idempotency_key: message_id,
                last_attempt: sent.elapsed(),
            };
        };
        let deadline = Instant::now() + self.timeout;
        let key = message_id.unwrap_or_else(uuid::Uuid::new_v4);
        let key_value = HeaderValue::from_str(&wire::idempotency_key_value(&key))
            .expect("a quoted UUID is a valid header value");
        retry.budget.deposit();
        let mut delivery = Delivery {
            result: Ok(()),
            attempts: 0,
            budget_denied: false,
            deadline_denied: false,
            replayed: false,
            idempotency_key: Some(key),
            last_attempt: Duration::ZERO,
        };
        // Drawn from the OS's randomness only if a retry is actually considered.
        let mut jitter = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let sent = Instant::now();
            let answer = self
                .attempt(item_code, &id, Some(&key), Some((&key_value, remaining)))
                .await;
            delivery.last_attempt = sent.elapsed();
            delivery.attempts += 1;
            delivery.replayed = answer.replayed;
            delivery.result = answer.result;
            let Err(error) = &delivery.result else {
                return delivery;
            };
            if !retry::is_retryable(error) || delivery.attempts >= retry.policy.max_attempts {
                return delivery;
            }
            // Retry-After is a floor; the jitter on top keeps the clients that one shedding
            // told "1 second" from all coming back in the same instant.
            let jitter = jitter.get_or_insert_with(Jitter::from_entropy);
            let wait = retry
                .policy
                .backoff(delivery.attempts, jitter)
                .saturating_add(answer.retry_after.unwrap_or_default());
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !retry::worth_another_attempt(remaining.saturating_sub(wait)) {
                delivery.deadline_denied = true;
                return delivery;
            }
            // Checked last, so a token is spent only on a retry that is really made.
            if !retry.budget.try_withdraw() {
                delivery.budget_denied = true;
                return delivery;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt over the manager's transport. `guarded` carries, under a retry policy,
    /// the idempotency key's header value and the time left: then the attempt may take no
    /// longer (and over HTTP the deadline header is sent). Without it the request is the
    /// original's, bounded by the manager's timeout. `message_id` is the AMQP message's id
    /// (reliable mode), the same on every attempt.
    async fn attempt(
        &self,
        item_code: &str,
        request_id: &HeaderValue,
        message_id: Option<&uuid::Uuid>,
        guarded: Option<(&HeaderValue, Duration)>,
    ) -> Answer {
        let http = match &self.transport {
            Transport::Http(http) => http,
            Transport::Amqp(publisher) => {
                let time = guarded.map_or(self.timeout, |(_, remaining)| remaining);
                // A HeaderValue built from a &str is valid UTF-8.
                let request_id = request_id.to_str().unwrap_or_default();
                let message_id = message_id.filter(|_| publisher.mode() == DeliveryMode::Reliable);
                let result = publisher
                    .publish(
                        item_code,
                        request_id,
                        message_id,
                        Instant::now() + time,
                        self.timeout,
                    )
                    .await;
                return Answer {
                    result,
                    retry_after: None,
                    replayed: false,
                };
            }
        };
        let mut request = http
            .client
            .post(http.endpoint.clone())
            .header(CONTENT_TYPE, wire::FORM_CONTENT_TYPE)
            .header(wire::REQUEST_ID_HEADER, request_id.clone())
            .body(wire::form_body(item_code));
        if let Some((key, remaining)) = guarded {
            let budget = retry::request_budget(remaining);
            request = request
                .header(wire::IDEMPOTENCY_KEY_HEADER, key.clone())
                .header(
                    wire::REQUEST_BUDGET_HEADER,
                    wire::request_budget_value(budget),
                )
                .timeout(remaining);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                return Answer {
                    result: Err(self.classify(http, error)),
                    retry_after: None,
                    replayed: false,
                };
            }
        };
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let replayed = header(wire::IDEMPOTENT_REPLAYED_HEADER).is_some_and(wire::is_replayed);
        if response.status().is_success() {
            return Answer {
                result: Ok(()),
                retry_after: None,
                replayed,
            };
        }
        let retry_after = header(RETRY_AFTER.as_str())
            .and_then(|v| wire::parse_retry_after(v, SystemTime::now()));
        Answer {
            result: Err(rejection(response).await),
            retry_after,
            replayed,
        }
    }

    /// Sorts a failed exchange by what the operator should do about it. A timeout comes
    /// first: a connect attempt that runs out of time is "no answer in time", not "refused".
    fn classify(&self, http: &Http, error: reqwest::Error) -> ReplenishmentError {
        if error.is_timeout() {
            ReplenishmentError::TimedOut {
                after: self.timeout,
            }
        } else if error.is_connect() {
            ReplenishmentError::Connect {
                url: http.base_url.to_string(),
                source: error,
            }
        } else {
            ReplenishmentError::Transport { source: error }
        }
    }
}

impl StockManagerBuilder {
    /// The total deadline of one call: connect, send and the complete answer — under a
    /// retry policy, every attempt and every wait between them. Default [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Over HTTP `true` (the default, as the original): every call opens a new TCP
    /// connection and closes it afterwards; `false`: idle connections are kept and reused.
    ///
    /// Over AMQP `false` (the default): one connection and channel, opened by the first
    /// call, shared by every call and clone, replaced after it fails; `true`: the
    /// original's connection, channel and queue declaration per call, closed before the
    /// call returns.
    pub fn new_connection_per_request(mut self, yes: bool) -> Self {
        self.new_connection_per_request = yes;
        self
    }

    /// `None` (the default, as the original): one attempt per call, no idempotency or
    /// deadline header. `Some(policy)`: retries as [`StockManager::replenish`] describes;
    /// the policy is checked by [`StockManagerBuilder::build`].
    pub fn retry_policy(mut self, policy: Option<RetryPolicy>) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Draw on `budget` instead of a fresh one, so that several managers (e.g. one per
    /// virtual user, each with its own connection) share one retry budget as clones of one
    /// manager do. Ignored without a retry policy.
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.retry_budget = Some(budget);
        self
    }

    /// Checks the settings and builds the manager. Fails on an unusable retry policy, and
    /// on any retry policy with faithful AMQP delivery: a faithful message has no
    /// `message_id`, so a publish repeated after an unclear failure (a lost connection, a
    /// timeout) could place the order twice, and the original never retried.
    pub fn build(self) -> Result<StockManager, ConfigError> {
        if let (Target::Amqp(_, DeliveryMode::Faithful), Some(_)) =
            (&self.target, &self.retry_policy)
        {
            return Err(ConfigError::InvalidRetryPolicy {
                reason: "retries over AMQP need reliable delivery: a faithful message carries \
                         no message id, so a repeated publish could place the order twice"
                    .to_owned(),
            });
        }
        let retry = match self.retry_policy {
            Some(policy) => {
                policy.validate()?;
                Some(Retry {
                    budget: self
                        .retry_budget
                        .unwrap_or_else(|| RetryBudget::new(&policy)),
                    policy,
                })
            }
            None => None,
        };
        let transport = match self.target {
            Target::Http(base_url) => Transport::Http(http_transport(
                base_url,
                self.timeout,
                self.new_connection_per_request,
            )?),
            Target::Amqp(url, mode) => {
                Transport::Amqp(Publisher::new(url, mode, self.new_connection_per_request))
            }
        };
        Ok(StockManager {
            transport,
            timeout: self.timeout,
            new_connection_per_request: self.new_connection_per_request,
            retry,
        })
    }
}

/// The HTTP client for `base_url`, with the original's connection behaviour when
/// `new_connection_per_request`.
fn http_transport(
    base_url: BaseUrl,
    timeout: Duration,
    new_connection_per_request: bool,
) -> Result<Http, ConfigError> {
    let mut client = reqwest::Client::builder()
        .timeout(timeout)
        // The API answers 201 or an error, never a redirect; following one would turn the
        // POST into a GET elsewhere. A 3xx is reported as what it is.
        .redirect(reqwest::redirect::Policy::none())
        // A proxy picked up from the environment would sit between the load and the API
        // and silently change every measurement; the API is addressed directly.
        .no_proxy();
    if new_connection_per_request {
        // The original built a new HttpClient per call, so each call paid a TCP handshake
        // and the server saw one connection per request. Keeping no idle connection gives
        // that behaviour with one client: after each answer the connection is closed
        // instead of pooled, so the next call must connect anew.
        client = client.pool_max_idle_per_host(0);
    }
    let client = client
        .build()
        .map_err(|source| ConfigError::Client { source })?;
    Ok(Http {
        endpoint: base_url.replenishment_url(),
        base_url,
        client,
    })
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, mpsc};
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
        scripted_peer(vec![response], Duration::ZERO)
    }

    /// A peer whose n-th request (counted over all connections, from 0) gets `script[n]`,
    /// or the script's last entry once it has run out, after waiting `delay`.
    fn scripted_peer(script: Vec<Option<String>>, delay: Duration) -> Peer {
        assert!(!script.is_empty());
        let script = Arc::new(script);
        let served = Arc::new(AtomicUsize::new(0));
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
                        let (script, served) = (script.clone(), served.clone());
                        thread::spawn(move || {
                            while let Some(request) = read_request(&mut stream) {
                                let n = served.fetch_add(1, Ordering::SeqCst);
                                let _ = requests_tx.send(request);
                                thread::sleep(delay);
                                let Some(response) = &script[n.min(script.len() - 1)] else {
                                    return;
                                };
                                if stream.write_all(response.as_bytes()).is_err() {
                                    return;
                                }
                            }
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(2))
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
        assert_eq!(
            manager.base_url().unwrap().as_str(),
            "http://127.0.0.1:8080"
        );
        let Transport::Http(http) = &manager.transport else {
            panic!("an HTTP manager");
        };
        assert_eq!(
            http.endpoint.as_str(),
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

    // ---- retries -------------------------------------------------------------------------

    /// A manager with `policy` and `timeout`.
    fn retrying(addr: SocketAddr, policy: RetryPolicy, timeout: Duration) -> StockManager {
        let url = BaseUrl::parse(&format!("http://{addr}")).unwrap();
        StockManager::builder(url)
            .timeout(timeout)
            .retry_policy(Some(policy))
            .build()
            .unwrap()
    }

    /// The default policy with waits of a few milliseconds, for tests about counts.
    fn quick() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        }
    }

    fn status(status_line: &str, extra_headers: &str) -> Option<String> {
        Some(format!(
            "HTTP/1.1 {status_line}\r\n{extra_headers}content-length: 0\r\n\r\n"
        ))
    }

    /// The value of header `name` (lower case) in a request as the peer read it.
    fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
        request.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn received(peer: &Peer) -> Vec<String> {
        peer.requests.try_iter().collect()
    }

    #[tokio::test]
    async fn retries_are_off_by_default_one_attempt_without_the_new_headers() {
        let peer = peer(status("503 Service Unavailable", "retry-after: 0\r\n"));
        let manager = manager(peer.addr);
        assert!(manager.retry_policy().is_none() && manager.retry_budget().is_none());
        let delivery = manager.replenish("123", "req-1").await;
        assert_eq!(delivery.result.unwrap_err().status(), Some(503));
        assert_eq!(delivery.attempts, 1);
        assert_eq!(delivery.idempotency_key, None);
        assert!(!delivery.budget_denied && !delivery.deadline_denied);
        manager
            .request_stock_replenishment("123")
            .await
            .unwrap_err();
        let requests = received(&peer);
        assert_eq!(requests.len(), 2, "one attempt per call");
        for request in &requests {
            assert_eq!(header(request, wire::IDEMPOTENCY_KEY_HEADER), None);
            assert_eq!(header(request, wire::REQUEST_BUDGET_HEADER), None);
        }
    }

    #[tokio::test]
    async fn every_attempt_carries_the_same_key_and_a_shrinking_budget() {
        // The peer takes 20 ms per answer, so each attempt has visibly less time left.
        let peer = scripted_peer(
            vec![
                status("503 Service Unavailable", ""),
                status("409 Conflict", ""),
                Some(CREATED.to_owned()),
            ],
            Duration::from_millis(20),
        );
        let manager = retrying(peer.addr, quick(), Duration::from_secs(2));
        let delivery = manager.replenish("123", "req-7").await;
        assert!(delivery.result.is_ok(), "{:?}", delivery.result);
        assert_eq!(delivery.attempts, 3);
        assert!(!delivery.replayed && !delivery.budget_denied && !delivery.deadline_denied);
        let key = delivery.idempotency_key.expect("a key under a policy");
        assert_eq!(key.get_version_num(), 4);
        let requests = received(&peer);
        assert_eq!(requests.len(), 3);
        let mut budgets = Vec::new();
        for request in &requests {
            assert_eq!(
                header(request, wire::IDEMPOTENCY_KEY_HEADER),
                Some(format!("\"{key}\"").as_str()),
                "{request}"
            );
            assert_eq!(header(request, wire::REQUEST_ID_HEADER), Some("req-7"));
            assert!(request.ends_with("\r\n\r\n=123"), "{request}");
            let budget: u64 = header(request, wire::REQUEST_BUDGET_HEADER)
                .expect("a budget header")
                .parse()
                .unwrap();
            budgets.push(budget);
        }
        // 2 s less the 5 % margin at most, and less on each attempt.
        assert!(budgets[0] <= 1900 && budgets[0] > 1500, "{budgets:?}");
        assert!(budgets.windows(2).all(|w| w[1] < w[0]), "{budgets:?}");
    }

    #[tokio::test]
    async fn retry_after_is_waited_out() {
        let peer = scripted_peer(
            vec![
                status("503 Service Unavailable", "retry-after: 1\r\n"),
                Some(CREATED.to_owned()),
            ],
            Duration::ZERO,
        );
        let manager = retrying(peer.addr, RetryPolicy::default(), DEFAULT_TIMEOUT);
        let started = Instant::now();
        let delivery = manager.replenish("123", "req-1").await;
        let elapsed = started.elapsed();
        assert!(delivery.result.is_ok(), "{:?}", delivery.result);
        assert_eq!(delivery.attempts, 2);
        assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
        // Retry-After plus at most the first retry's jitter ceiling (100 ms), plus slack.
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_request_the_server_calls_wrong_is_not_retried() {
        for (line, code) in [
            ("400 Bad Request", 400),
            ("404 Not Found", 404),
            ("413 Payload Too Large", 413),
            ("422 Unprocessable Entity", 422),
        ] {
            let peer = peer(status(line, ""));
            let delivery = retrying(peer.addr, quick(), DEFAULT_TIMEOUT)
                .replenish("123", "req-1")
                .await;
            assert_eq!(delivery.result.unwrap_err().status(), Some(code));
            assert_eq!(delivery.attempts, 1, "{code}");
            assert!(!delivery.budget_denied && !delivery.deadline_denied);
            assert_eq!(received(&peer).len(), 1, "{code}");
        }
    }

    #[tokio::test]
    async fn when_attempts_run_out_the_last_error_is_returned() {
        let peer = scripted_peer(
            vec![
                status("503 Service Unavailable", ""),
                status("502 Bad Gateway", ""),
                status("500 Internal Server Error", ""),
                Some(CREATED.to_owned()),
            ],
            Duration::ZERO,
        );
        let manager = retrying(peer.addr, quick(), DEFAULT_TIMEOUT);
        let delivery = manager.replenish("123", "req-1").await;
        assert_eq!(delivery.result.unwrap_err().status(), Some(500));
        assert_eq!(delivery.attempts, 3, "the default policy's limit");
        assert!(!delivery.budget_denied && !delivery.deadline_denied);
        assert_eq!(received(&peer).len(), 3);
        // The plain call reports the same way, under the same policy.
        let error = manager.request_stock_replenishment("1").await;
        assert!(
            error.is_ok(),
            "the script's fourth answer is 201: {error:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_then_given_up() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let delivery = retrying(addr, quick(), DEFAULT_TIMEOUT)
            .replenish("123", "req-1")
            .await;
        assert_eq!(delivery.result.unwrap_err().kind(), "connect");
        assert_eq!(delivery.attempts, 3);
    }

    #[tokio::test]
    async fn a_broken_exchange_is_retried_and_a_replay_is_reported() {
        // The first attempt is read and then the connection closed without an answer: the
        // order may have been placed. The retry, same key, is answered from the record.
        let peer = scripted_peer(
            vec![None, status("201 Created", "idempotent-replayed: true\r\n")],
            Duration::ZERO,
        );
        let delivery = retrying(peer.addr, quick(), DEFAULT_TIMEOUT)
            .replenish("123", "req-1")
            .await;
        assert!(delivery.result.is_ok(), "{:?}", delivery.result);
        assert_eq!(delivery.attempts, 2);
        assert!(delivery.replayed);
        let requests = received(&peer);
        assert_eq!(
            header(&requests[0], wire::IDEMPOTENCY_KEY_HEADER),
            header(&requests[1], wire::IDEMPOTENCY_KEY_HEADER)
        );
    }

    #[tokio::test]
    async fn the_retry_budget_keeps_a_failing_spike_from_multiplying() {
        let peer = peer(status("503 Service Unavailable", ""));
        let manager = retrying(peer.addr, quick(), DEFAULT_TIMEOUT);
        const REQUESTS: u32 = 100;
        // Concurrent calls on clones: they share one budget.
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..REQUESTS {
            let manager = manager.clone();
            calls.spawn(async move { manager.replenish("123", &format!("req-{n}")).await });
        }
        let (mut attempts, mut denied) = (0, 0);
        while let Some(delivery) = calls.join_next().await {
            let delivery = delivery.unwrap();
            assert_eq!(delivery.result.unwrap_err().status(), Some(503));
            attempts += delivery.attempts;
            denied += u32::from(delivery.budget_denied);
        }
        // Initial allowance (max_attempts − 1 = 2) + 10 % of the requests, not 3×.
        let bound = REQUESTS + REQUESTS / 10 + 2;
        assert!(
            (REQUESTS..=bound).contains(&attempts),
            "{attempts} attempts for {REQUESTS} requests"
        );
        assert!(denied >= REQUESTS - (bound - REQUESTS), "{denied} denied");
        assert_eq!(
            received(&peer).len(),
            attempts as usize,
            "the server agrees"
        );
        assert!(manager.retry_budget().unwrap().tokens() < 1.0);
    }

    #[tokio::test]
    async fn managers_can_share_one_budget() {
        let url = BaseUrl::parse("http://127.0.0.1:1").unwrap();
        let policy = RetryPolicy::default();
        let budget = RetryBudget::new(&policy);
        let build = || {
            StockManager::builder(url.clone())
                .retry_policy(Some(policy))
                .retry_budget(budget.clone())
                .build()
                .unwrap()
        };
        let (a, b) = (build(), build());
        assert!(a.retry_budget().unwrap().try_withdraw());
        assert!(b.retry_budget().unwrap().try_withdraw());
        assert!(
            !a.retry_budget().unwrap().try_withdraw(),
            "both drew on one"
        );
        assert_eq!(a.retry_policy(), Some(&policy));
    }

    #[tokio::test]
    async fn no_wait_runs_past_the_deadline() {
        let peer = peer(status("503 Service Unavailable", "retry-after: 5\r\n"));
        let manager = retrying(peer.addr, RetryPolicy::default(), Duration::from_secs(1));
        let started = Instant::now();
        let delivery = manager.replenish("123", "req-1").await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(1200), "{elapsed:?}");
        assert_eq!(delivery.result.unwrap_err().status(), Some(503));
        assert_eq!(delivery.attempts, 1);
        assert!(delivery.deadline_denied && !delivery.budget_denied);
        // The retry that was not made cost no token: 2 initial + 0.1 deposited.
        assert_eq!(manager.retry_budget().unwrap().tokens(), 2.1);
    }

    #[tokio::test]
    async fn the_timeout_bounds_all_attempts_and_waits_together() {
        // Each answer takes 150 ms and waits are up to 400 ms: ten attempts would need
        // seconds, the timeout allows one.
        let peer = scripted_peer(
            vec![status("503 Service Unavailable", "")],
            Duration::from_millis(150),
        );
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(400),
            max_delay: Duration::from_millis(400),
            ..RetryPolicy::default()
        };
        let manager = retrying(peer.addr, policy, Duration::from_secs(1));
        let started = Instant::now();
        let delivery = manager.replenish("123", "req-1").await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_millis(1200), "{elapsed:?}");
        assert!(delivery.attempts < 10, "{}", delivery.attempts);
        // Ended by the deadline, not by the attempts or the budget (9 initial tokens): either
        // a wait would have left too little time, or the last attempt, started with at least
        // MIN_ATTEMPT_TIME left, was cut off at the deadline itself.
        assert!(delivery.deadline_denied, "{delivery:?}");
        let error = delivery.result.unwrap_err();
        assert!(
            error.status() == Some(503) || error.kind() == "timed_out",
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_server_under_a_policy_times_out_once_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let manager = retrying(
            listener.local_addr().unwrap(),
            RetryPolicy::default(),
            Duration::from_millis(300),
        );
        let started = Instant::now();
        let delivery = manager.replenish("123", "req-1").await;
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(290) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        let error = delivery.result.unwrap_err();
        assert_eq!(error.kind(), "timed_out");
        assert_eq!(
            error.to_string(),
            "no answer from the purchasing API within 300ms (timed out)"
        );
        assert_eq!(delivery.attempts, 1);
        drop(listener);
    }

    #[tokio::test]
    async fn a_single_attempt_policy_sends_the_headers_but_never_retries() {
        let peer = peer(status("503 Service Unavailable", ""));
        let delivery = retrying(
            peer.addr,
            RetryPolicy::with_max_attempts(1),
            DEFAULT_TIMEOUT,
        )
        .replenish("123", "req-1")
        .await;
        assert_eq!(delivery.attempts, 1);
        assert!(!delivery.budget_denied && !delivery.deadline_denied);
        let requests = received(&peer);
        assert_eq!(requests.len(), 1);
        assert!(header(&requests[0], wire::IDEMPOTENCY_KEY_HEADER).is_some());
        assert!(header(&requests[0], wire::REQUEST_BUDGET_HEADER).is_some());
    }

    #[tokio::test]
    async fn an_unsendable_request_id_makes_no_attempt_under_a_policy_either() {
        let peer = peer(Some(CREATED.to_owned()));
        let manager = retrying(peer.addr, quick(), DEFAULT_TIMEOUT);
        let delivery = manager.replenish("123", "a\nb").await;
        assert_eq!(delivery.result.unwrap_err().kind(), "invalid_request_id");
        assert_eq!(delivery.attempts, 0);
        assert_eq!(delivery.idempotency_key, None);
        assert!(
            peer.connections
                .recv_timeout(Duration::from_millis(200))
                .is_err()
        );
        assert_eq!(manager.retry_budget().unwrap().tokens(), 2.0, "no deposit");
    }

    #[test]
    fn an_unusable_policy_is_refused_at_build() {
        let url = BaseUrl::parse(DEFAULT_URL).unwrap();
        let error = StockManager::builder(url)
            .retry_policy(Some(RetryPolicy::with_max_attempts(11)))
            .build()
            .unwrap_err();
        assert!(
            matches!(error, ConfigError::InvalidRetryPolicy { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "invalid retry policy: max_attempts is 11; it must be between 1 and 10"
        );
    }

    fn broker() -> AmqpUrl {
        AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap()
    }

    #[test]
    fn amqp_managers_reuse_one_connection_unless_asked_and_say_where_they_publish() {
        let manager = StockManager::amqp_builder(broker(), DeliveryMode::Reliable)
            .build()
            .unwrap();
        assert!(!manager.new_connection_per_request(), "reuse by default");
        assert_eq!(manager.timeout(), DEFAULT_TIMEOUT);
        assert_eq!(manager.delivery_mode(), Some(DeliveryMode::Reliable));
        assert_eq!(manager.base_url(), None);
        assert_eq!(manager.target(), "amqp://guest:***@127.0.0.1:5672/%2f");
        let original = StockManager::amqp_builder(broker(), DeliveryMode::Faithful)
            .new_connection_per_request(true)
            .build()
            .unwrap();
        assert!(original.new_connection_per_request());
        let http = StockManager::new(DEFAULT_URL).unwrap();
        assert_eq!((http.amqp_url(), http.delivery_mode()), (None, None));
    }

    #[test]
    fn retries_over_amqp_need_reliable_delivery() {
        let policy = Some(RetryPolicy::default());
        let faithful = StockManager::amqp_builder(broker(), DeliveryMode::Faithful)
            .retry_policy(policy)
            .build()
            .unwrap_err();
        assert!(
            faithful
                .to_string()
                .contains("retries over AMQP need reliable delivery"),
            "{faithful}"
        );
        assert!(
            StockManager::amqp_builder(broker(), DeliveryMode::Reliable)
                .retry_policy(policy)
                .build()
                .is_ok()
        );
    }

    #[tokio::test]
    async fn every_reliable_call_gets_its_own_message_id_and_faithful_ones_none() {
        // Nothing listens: the calls fail, but the ids are decided before sending.
        let closed = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            AmqpUrl::parse(&format!("amqp://{}", listener.local_addr().unwrap())).unwrap()
        };
        let reliable = StockManager::amqp_builder(closed.clone(), DeliveryMode::Reliable)
            .build()
            .unwrap();
        let first = reliable.replenish("1", "req-1").await;
        let second = reliable.replenish("2", "req-2").await;
        assert_eq!(first.result.as_ref().unwrap_err().kind(), "amqp_connect");
        assert_eq!(first.attempts, 1);
        assert!(first.idempotency_key.is_some() && second.idempotency_key.is_some());
        assert_ne!(first.idempotency_key, second.idempotency_key);
        let faithful = StockManager::amqp_builder(closed, DeliveryMode::Faithful)
            .build()
            .unwrap();
        assert_eq!(faithful.replenish("1", "req").await.idempotency_key, None);
        let bad_id = reliable.replenish("1", "a\nb").await;
        assert_eq!(bad_id.attempts, 0);
        assert_eq!(
            bad_id.result.unwrap_err().kind(),
            "invalid_request_id",
            "one request-id rule for both transports"
        );
    }
}
