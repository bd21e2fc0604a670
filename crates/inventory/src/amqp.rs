//! The AMQP transport of `StockManager`: the messaging variant of the original
//! `StockManager`, publishing one message per order to RabbitMQ instead of calling the API.
//!
//! This module owns the publisher's side of the queue contract (`wire_contract::amqp`):
//! which queues to declare, what a message carries in each [`DeliveryMode`], what counts as
//! success, and the connection the messages travel on.
//!
//! * **Faithful** — exactly the original: declare [`QUEUE`] non-durable without arguments,
//!   publish the item code as the UTF-8 body to the default exchange with routing key
//!   [`QUEUE`], no properties at all (transient), no publisher confirms. Success = the
//!   publish call returned, i.e. the frames were written to the socket — not that the
//!   broker has the message.
//! * **Reliable** — declare the dead-letter queue, then the main queue, both durable, the
//!   main one dead-lettering into the other; publisher confirms on the channel; the message
//!   persistent, with a `message_id` (one per logical order, the same on every retry: the
//!   worker deduplicates by it), the request id as `correlation_id` and as the
//!   [`REQUEST_ID_HEADER`] header, the contract's content type, and `mandatory` so that an
//!   unroutable message comes back instead of vanishing. Success = the broker's ack, which
//!   RabbitMQ sends for a persistent message on a durable queue once it is written to disk.
//!
//! Why each knob:
//!
//! * **One connection and one channel for many publishes** (the default): a connection is a
//!   TCP and AMQP handshake (several round trips), and the lab publishes thousands of
//!   orders. The session is shared by every clone of the manager; concurrent publishes go
//!   out on the one channel and each waits for its own confirm (lapin matches confirms to
//!   delivery tags). Opening the session is serialized, so a burst of callers after a drop
//!   opens one connection, not hundreds — and waits for it: a long-running publisher opens
//!   it at start-up (`StockManager::connect`), so its first calls do not.
//! * **A connection per call** (opt-in: `new_connection_per_request(true)`): what the
//!   original did (`using (var connection = factory.CreateConnection())` per call); the
//!   call connects, declares, publishes and closes — the close handshake is part of the
//!   call, as the original's `Dispose`.
//! * **Reconnect, to another node**: no background reconnection. A session that lapin
//!   knows to be dead (the broker closed it, the socket broke) is replaced at the start of
//!   the next call, on the first node of the list that takes it, starting after the node
//!   that was lost (see the `nodes` module for the order and the bounds). A call whose own publish
//!   hits the failure marks the session unusable, so the call after it reconnects.
//! * **Reliable: a lost connection is "not confirmed", so the message goes out again**: a
//!   call whose message was published but not confirmed when the connection was lost
//!   publishes it again, with the same `message_id`, on the new connection (at most once
//!   per node in the list, and within the call's deadline). Every call waiting for a
//!   confirm does so for its own message, so every unconfirmed message is republished and
//!   none is reported confirmed until a broker confirmed it — once: a call returns once.
//!   If the lost broker had queued it after all, the worker drops the duplicate by its
//!   `message_id`. [`Delivery::republished`](crate::Delivery::republished) counts it. Anything else that fails a call
//!   (a timeout, a nack, a returned message) is the caller's to retry, as before: whether
//!   to publish again is the retry policy's decision.
//! * **Faithful: a failed publish is a failure**, as in the original: no republishing (a
//!   faithful message has no id, so a second copy would be a second order); the call
//!   fails with [`ReplenishmentError::ConnectionLost`] and the next one connects to the
//!   next node.
//! * **One runtime**: lapin serves the connection's socket through the tokio runtime that
//!   opened it, so a manager is used from one runtime (as the HTTP client's pooled
//!   connections are). If that runtime is gone, the next call times out and the one after
//!   opens a session on the caller's runtime. A runtime that does not run between calls (a
//!   current-thread runtime outside `block_on`) sees a broker's close only at the next
//!   call, which then fails as a lost connection; a multi-threaded one sees it at once.
//! * **A deadline per call** (the manager's timeout, 30 s by default as the HTTP client's):
//!   waiting for the session, connecting, declaring, publishing and the confirm together.
//!   A call that times out also marks its session unusable: a broker that stopped
//!   answering is not trusted with the next message.

use std::sync::Arc;
use std::time::Duration;

use amqp_link::AmqpUrls;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation};
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout_at};
use wire_contract::amqp::{CONTENT_TYPE, DEFAULT_EXCHANGE, PERSISTENT, QUEUE, REQUEST_ID_HEADER};

pub use nodes::NODE_CONNECT_TIMEOUT;
pub use session::CONNECTION_NAME;
pub use wire_contract::amqp::Delivery as DeliveryMode;

use crate::error::{AmqpStage, ReplenishmentError};
use crate::wire::one_line;
use nodes::Nodes;
use session::Session;

mod nodes;
mod session;

/// Publishes orders to the broker; the AMQP half of `StockManager`. Cheap to clone:
/// clones share the session and the choice of node.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    /// The brokers, in the order they are tried, and where the next connect starts.
    nodes: Nodes,
    /// What the queues and messages look like, and what success means.
    mode: DeliveryMode,
    /// The original's behaviour: a connection (and channel) opened and closed per call.
    connection_per_call: bool,
    /// The session all calls (and clones) share when connections are reused; `None` until
    /// the first call, and after a session was found unusable. The lock is held while a
    /// session is opened, so concurrent callers wait for that one instead of each
    /// connecting.
    session: Arc<Mutex<Option<Arc<Session>>>>,
}

/// How one publish call went: its result, and how often the message was published again
/// after a lost connection (reliable mode).
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) result: Result<(), ReplenishmentError>,
    /// Times the message went out again, with the same `message_id`, on a new connection
    /// after the one it was published on was lost before its confirm.
    pub(crate) republished: u32,
}

impl Publisher {
    pub(crate) fn new(urls: AmqpUrls, mode: DeliveryMode, connection_per_call: bool) -> Self {
        Publisher {
            nodes: Nodes::new(urls),
            mode,
            connection_per_call,
            session: Arc::new(Mutex::new(None)),
        }
    }

    pub(crate) fn urls(&self) -> &AmqpUrls {
        self.nodes.urls()
    }

    pub(crate) fn mode(&self) -> DeliveryMode {
        self.mode
    }

    /// Publishes one message for `item_code` and waits for what counts as success in this
    /// mode, by `deadline` at the latest; in reliable mode a lost connection sends the
    /// message again on a new one (see the module doc). `message_id` is the logical
    /// order's idempotency key (reliable mode; `None` in faithful mode, whose messages
    /// carry no properties). `after` is the timeout reported when the deadline passes.
    pub(crate) async fn publish(
        &self,
        item_code: &str,
        request_id: &str,
        message_id: Option<&uuid::Uuid>,
        deadline: Instant,
        after: Duration,
    ) -> Published {
        let properties = match self.check(item_code, request_id, message_id) {
            Ok(properties) => properties,
            Err(error) => return Published::failed(error, 0),
        };
        let mut republished = 0;
        let mut lost: Option<ReplenishmentError> = None;
        loop {
            let session = match self.session(deadline, after).await {
                Ok(session) => session,
                Err(error) => return Published::failed(in_doubt(lost, error), republished),
            };
            let result = self
                .publish_on(&session, item_code, properties.clone(), deadline, after)
                .await;
            self.done_with(&session, &result, deadline).await;
            let Err(loss @ ReplenishmentError::ConnectionLost { .. }) = result else {
                return Published {
                    result,
                    republished,
                };
            };
            self.nodes.lost(session.node);
            if !self.may_republish(republished, deadline) {
                return Published::failed(loss, republished);
            }
            republished += 1;
            lost = Some(loss);
        }
    }

    /// The item code and the properties, checked before anything is sent.
    fn check(
        &self,
        item_code: &str,
        request_id: &str,
        message_id: Option<&uuid::Uuid>,
    ) -> Result<BasicProperties, ReplenishmentError> {
        if let Err(reason) = item_code::ItemCode::parse(item_code) {
            return Err(ReplenishmentError::InvalidItemCode {
                code: item_code.to_owned(),
                reason,
            });
        }
        self.properties(request_id, message_id)
    }

    /// Whether a message whose connection was lost goes out again: reliable mode only, at
    /// most once per node of the list (each loss moves on to the next node), and only
    /// while the call has time left.
    fn may_republish(&self, republished: u32, deadline: Instant) -> bool {
        self.mode == DeliveryMode::Reliable
            && (republished as usize) < self.nodes.urls().len()
            && Instant::now() < deadline
    }

    /// The session this call publishes on: its own (connection per call) or the shared one.
    async fn session(
        &self,
        deadline: Instant,
        after: Duration,
    ) -> Result<Arc<Session>, ReplenishmentError> {
        if self.connection_per_call {
            let session = self.nodes.open(self.mode, deadline, after).await?;
            return Ok(Arc::new(session));
        }
        self.shared_session(deadline, after).await
    }

    /// After a publish on `session`: the original's `Dispose` when the connection is the
    /// call's own; else a session left in doubt is marked so the next call replaces it.
    async fn done_with(
        &self,
        session: &Session,
        result: &Result<(), ReplenishmentError>,
        deadline: Instant,
    ) {
        if self.connection_per_call {
            // A close that fails or runs out of time changes nothing about the message (it
            // was handed over, or the error says why not); dropping the session then
            // closes the socket anyway.
            let _ = timeout_at(deadline, session.connection.close(200, "call done".into())).await;
            return;
        }
        // A nack leaves one broker's session as it is (the broker refused one message);
        // on a cluster it ends the session too: measured on RabbitMQ 3.10, a channel on a
        // surviving node keeps nacking every publish to a quorum queue after the node that
        // led it dies, though a new leader is elected within a second and a new
        // connection publishes at once.
        let nacked = matches!(result, Err(ReplenishmentError::Nacked));
        if result.is_err() && (!nacked || self.nodes.urls().len() > 1) {
            session.set_unusable();
        }
    }

    /// Opens the shared session now — connect, confirms (reliable), declare — so the first
    /// publishes do not wait for it: what a long-running publisher does at start-up. Does
    /// nothing when every call opens its own connection (the original's way: the
    /// handshake is part of each call) or when a usable session is already open.
    pub(crate) async fn open_session(
        &self,
        deadline: Instant,
        after: Duration,
    ) -> Result<(), ReplenishmentError> {
        if self.connection_per_call {
            return Ok(());
        }
        self.shared_session(deadline, after).await.map(drop)
    }

    /// The message's properties: none in faithful mode (the original passed
    /// `basicProperties: null`), the reliable set otherwise.
    fn properties(
        &self,
        request_id: &str,
        message_id: Option<&uuid::Uuid>,
    ) -> Result<BasicProperties, ReplenishmentError> {
        if self.mode == DeliveryMode::Faithful {
            return Ok(BasicProperties::default());
        }
        let correlation_id =
            ShortString::try_new(request_id).map_err(|_| ReplenishmentError::InvalidRequestId {
                request_id: request_id.to_owned(),
                why: crate::error::TOO_LONG_FOR_AMQP,
            })?;
        let mut headers = FieldTable::default();
        headers.insert(
            REQUEST_ID_HEADER.into(),
            AMQPValue::LongString(LongString::from(request_id)),
        );
        let mut properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type(CONTENT_TYPE.into())
            .with_correlation_id(correlation_id)
            .with_headers(headers);
        if let Some(id) = message_id {
            properties = properties.with_message_id(id.to_string().as_str().into());
        }
        Ok(properties)
    }

    /// The shared session, opened (under the lock) if there is none or it is unusable.
    async fn shared_session(
        &self,
        deadline: Instant,
        after: Duration,
    ) -> Result<Arc<Session>, ReplenishmentError> {
        let mut slot = timeout_at(deadline, self.session.lock())
            .await
            .map_err(|_| ReplenishmentError::AmqpTimedOut {
                after,
                stage: AmqpStage::Connecting,
            })?;
        if let Some(session) = slot.as_ref().filter(|s| s.is_usable()) {
            return Ok(Arc::clone(session));
        }
        // A session lapin found dead moves the next connect on, as a loss seen by a call.
        if let Some(dead) = slot.take() {
            self.nodes.lost(dead.node);
        }
        // Dropping the old handle closes that connection once no call uses it any more.
        let session = Arc::new(self.nodes.open(self.mode, deadline, after).await?);
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }

    /// Hands the message over and, in reliable mode, waits for the broker's verdict.
    async fn publish_on(
        &self,
        session: &Session,
        item_code: &str,
        properties: BasicProperties,
        deadline: Instant,
        after: Duration,
    ) -> Result<(), ReplenishmentError> {
        let reliable = self.mode == DeliveryMode::Reliable;
        let options = BasicPublishOptions {
            mandatory: reliable,
            immediate: false,
        };
        let confirm = timeout_at(
            deadline,
            session.channel.basic_publish(
                DEFAULT_EXCHANGE.into(),
                QUEUE.into(),
                options,
                item_code.as_bytes(),
                properties,
            ),
        )
        .await
        .map_err(|_| ReplenishmentError::AmqpTimedOut {
            after,
            stage: AmqpStage::Publishing,
        })?
        .map_err(|error| session.failure(&error))?;
        if !reliable {
            // The original's success: the publish call returned. The confirm future is
            // already resolved (`NotRequested`); nothing to wait for.
            return Ok(());
        }
        let confirmation = timeout_at(deadline, confirm)
            .await
            .map_err(|_| ReplenishmentError::ConfirmTimedOut { after })?
            .map_err(|error| session.failure(&error))?;
        verdict(confirmation)
    }
}

impl Published {
    fn failed(error: ReplenishmentError, republished: u32) -> Self {
        Published {
            result: Err(error),
            republished,
        }
    }
}

/// What the broker's answer to a confirmed publish means.
fn verdict(confirmation: Confirmation) -> Result<(), ReplenishmentError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(ReplenishmentError::Returned {
                reply_code: returned.reply_code,
                reply_text: one_line(returned.reply_text.as_str()),
            })
        }
        Confirmation::Nack(None) => Err(ReplenishmentError::Nacked),
        // Cannot happen on a channel in confirm mode; not a success all the same.
        Confirmation::NotRequested => Err(ReplenishmentError::ChannelClosed {
            reason: "the channel is not in publisher-confirm mode, so the message is \
                     unconfirmed"
                .to_owned(),
        }),
    }
}

/// The error of a call that could not publish again after `lost`: once a message went out
/// on a connection that was lost, it may be queued there, so the call's error says "may or
/// may not be queued" (the loss), with why no other connection took it — never "nothing
/// was published".
fn in_doubt(lost: Option<ReplenishmentError>, error: ReplenishmentError) -> ReplenishmentError {
    match lost {
        Some(ReplenishmentError::ConnectionLost { url, reason }) => {
            ReplenishmentError::ConnectionLost {
                url,
                reason: format!("{reason}; publishing it again failed: {error}"),
            }
        }
        Some(other) => other,
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faithful_messages_carry_no_properties_at_all() {
        let publisher = Publisher::new(
            AmqpUrls::parse("amqp://broker").unwrap(),
            DeliveryMode::Faithful,
            false,
        );
        let id = uuid::Uuid::new_v4();
        assert_eq!(
            publisher.properties("req-1", Some(&id)).unwrap(),
            BasicProperties::default()
        );
    }

    #[test]
    fn reliable_messages_are_persistent_and_identified() {
        let publisher = Publisher::new(
            AmqpUrls::parse("amqp://broker").unwrap(),
            DeliveryMode::Reliable,
            false,
        );
        let id = uuid::Uuid::new_v4();
        let properties = publisher.properties("req-1", Some(&id)).unwrap();
        assert_eq!(properties.delivery_mode(), &Some(PERSISTENT));
        assert_eq!(
            properties.message_id().as_ref().map(ShortString::as_str),
            Some(id.to_string().as_str())
        );
        assert_eq!(
            properties
                .correlation_id()
                .as_ref()
                .map(ShortString::as_str),
            Some("req-1")
        );
        assert_eq!(
            properties.content_type().as_ref().map(ShortString::as_str),
            Some(CONTENT_TYPE)
        );
        let headers = properties.headers().clone().unwrap_or_default();
        assert_eq!(
            headers.inner().get(REQUEST_ID_HEADER),
            Some(&AMQPValue::LongString("req-1".into()))
        );
    }

    #[test]
    fn a_request_id_too_long_for_a_short_string_is_refused_not_a_panic() {
        let publisher = Publisher::new(
            AmqpUrls::parse("amqp://broker").unwrap(),
            DeliveryMode::Reliable,
            false,
        );
        let long = "x".repeat(256);
        let error = publisher.properties(&long, None).unwrap_err();
        assert_eq!(error.kind(), "invalid_request_id");
        assert!(error.to_string().contains("at most 255 bytes"), "{error}");
        assert!(publisher.properties(&"x".repeat(255), None).is_ok());
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error_naming_the_broker() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = AmqpUrls::parse(&format!("amqp://guest:secret@127.0.0.1:{port}/%2f")).unwrap();
        for per_call in [false, true] {
            let publisher = Publisher::new(url.clone(), DeliveryMode::Reliable, per_call);
            let after = Duration::from_secs(5);
            let started = Instant::now();
            let error = publisher
                .publish("123", "req", None, started + after, after)
                .await
                .result
                .unwrap_err();
            assert!(started.elapsed() < after, "refused at once");
            assert_eq!(error.kind(), "amqp_connect", "{error}");
            let text = error.to_string();
            assert!(
                text.starts_with(&format!(
                    "could not connect to the RabbitMQ broker at amqp://guest:***@127.0.0.1:{port}/%2f: connection refused"
                )),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_broker_that_never_answers_times_out_while_connecting() {
        // Accepts (the kernel completes the handshake from the backlog) and never speaks.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = AmqpUrls::parse(&format!("amqp://{}", listener.local_addr().unwrap())).unwrap();
        let publisher = Publisher::new(url, DeliveryMode::Faithful, false);
        let after = Duration::from_millis(300);
        let started = Instant::now();
        let error = publisher
            .publish("123", "req", None, started + after, after)
            .await
            .result
            .unwrap_err();
        let took = started.elapsed();
        assert!(took >= after && took < after * 5, "{took:?}");
        assert!(
            matches!(
                error,
                ReplenishmentError::AmqpTimedOut {
                    stage: AmqpStage::Connecting,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains("nothing was published"),
            "{error}"
        );
    }
}

#[cfg(test)]
mod several_nodes {
    use super::*;

    /// A loopback port where nothing listens.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn no_node_reachable_is_one_connect_error_naming_each_without_its_password() {
        let (a, b) = (closed_port(), closed_port());
        let urls = AmqpUrls::parse(&format!(
            "amqp://guest:s3cret@127.0.0.1:{a}/%2f,amqp://guest:s3cret@127.0.0.1:{b}/%2f"
        ))
        .unwrap();
        let publisher = Publisher::new(urls, DeliveryMode::Reliable, false);
        let after = Duration::from_secs(5);
        let started = Instant::now();
        let published = publisher
            .publish("123", "req", None, started + after, after)
            .await;
        assert!(started.elapsed() < after, "refused at once");
        assert_eq!(published.republished, 0, "nothing was ever published");
        let error = published.result.unwrap_err();
        assert!(error.is_connect(), "{error}");
        assert_eq!(error.kind(), "amqp_connect");
        let text = error.to_string();
        assert!(
            text.starts_with("could not connect to any of the 2 RabbitMQ brokers (")
                && text.contains(&format!("127.0.0.1:{a}/%2f: connection refused; "))
                && text.contains(&format!("127.0.0.1:{b}/%2f: connection refused)"))
                && !text.contains("s3cret"),
            "{text}"
        );
    }

    /// Connections waiting on `listener` (accepted and dropped here).
    fn accepted(listener: &std::net::TcpListener) -> usize {
        std::iter::from_fn(|| listener.accept().ok()).count()
    }

    #[tokio::test]
    async fn the_next_connect_starts_after_the_node_that_failed() {
        // Two nodes that accept and never speak: each connect times out on the node it
        // tries first, which the listeners' queues then tell.
        let silent = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            listener
        };
        let (a, b) = (silent(), silent());
        let urls = AmqpUrls::parse(&format!(
            "amqp://{},amqp://{}",
            a.local_addr().unwrap(),
            b.local_addr().unwrap()
        ))
        .unwrap();
        let nodes = Nodes::new(urls);
        let after = Duration::from_millis(200);
        let open = || nodes.open(DeliveryMode::Faithful, Instant::now() + after, after);
        let timed_out =
            |e: &ReplenishmentError| matches!(e, ReplenishmentError::AmqpTimedOut { .. });

        assert!(timed_out(&open().await.unwrap_err()));
        assert_eq!(
            (accepted(&a), accepted(&b)),
            (1, 0),
            "the first connect tries A"
        );
        assert!(timed_out(&open().await.unwrap_err()));
        assert_eq!(
            (accepted(&a), accepted(&b)),
            (0, 1),
            "A failed last: B first"
        );
        // A loss reported late (the cursor has moved on since) skips no node.
        nodes.lost(1);
        assert!(timed_out(&open().await.unwrap_err()));
        assert_eq!(
            (accepted(&a), accepted(&b)),
            (1, 0),
            "B failed last: A first"
        );
    }
}
