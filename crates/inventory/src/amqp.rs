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
//! * **Reconnect on the next call**: no background reconnection. A session that lapin knows
//!   to be dead (the broker closed it, the socket broke) is replaced at the start of the
//!   next call; a call whose own publish hits the failure fails with
//!   [`ReplenishmentError::ConnectionLost`] (or another kind) and marks the session unusable,
//!   so the call after it reconnects. Nothing is retried behind the caller's back: whether
//!   to publish again is the retry policy's decision (reliable mode only, with the same
//!   `message_id`).
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use amqp_link::DeclareError;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind};
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout_at};
use wire_contract::amqp::{CONTENT_TYPE, DEFAULT_EXCHANGE, PERSISTENT, QUEUE, REQUEST_ID_HEADER};

pub use wire_contract::amqp::Delivery as DeliveryMode;

use crate::amqp_url::AmqpUrl;
use crate::error::{AmqpStage, ReplenishmentError, io_phrase};
use crate::wire::one_line;

/// AMQP reply codes of a broker that answered and refused: a login it turned down, and a
/// virtual host that does not exist or that the user may not use.
const ACCESS_REFUSED: u16 = 403;
const NOT_ALLOWED: u16 = 530;

/// The name the publisher's connections show in the broker's log and in `rabbitmqctl
/// list_connections`, so an operator (or a test) can tell them from the worker's.
pub const CONNECTION_NAME: &str = "inventory StockManager";

/// Publishes orders to the broker; the AMQP half of `StockManager`. Cheap to clone:
/// clones share the session.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    /// Where the broker is; also names it in errors (password hidden).
    url: AmqpUrl,
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

/// One open connection with its channel, the queues declared and (reliable mode) confirms
/// enabled.
#[derive(Debug)]
struct Session {
    /// Kept for its state, and because dropping the last handle closes the connection.
    connection: Connection,
    channel: Channel,
    /// Set when a call on this session failed in a way that leaves it in doubt (timed out,
    /// lost, returned message, closed channel): the next call opens a new session. Set
    /// without the lock, so a failing call never waits for another caller's connect.
    unusable: AtomicBool,
}

impl Session {
    fn is_usable(&self) -> bool {
        !self.unusable.load(Ordering::Relaxed)
            && self.connection.status().connected()
            && self.channel.status().connected()
    }
}

impl Publisher {
    pub(crate) fn new(url: AmqpUrl, mode: DeliveryMode, connection_per_call: bool) -> Self {
        Publisher {
            url,
            mode,
            connection_per_call,
            session: Arc::new(Mutex::new(None)),
        }
    }

    pub(crate) fn url(&self) -> &AmqpUrl {
        &self.url
    }

    pub(crate) fn mode(&self) -> DeliveryMode {
        self.mode
    }

    /// Publishes one message for `item_code` and waits for what counts as success in this
    /// mode, by `deadline` at the latest. `message_id` is the logical order's idempotency
    /// key (reliable mode; `None` in faithful mode, whose messages carry no properties).
    /// `after` is the timeout reported when the deadline passes.
    pub(crate) async fn publish(
        &self,
        item_code: &str,
        request_id: &str,
        message_id: Option<&uuid::Uuid>,
        deadline: Instant,
        after: Duration,
    ) -> Result<(), ReplenishmentError> {
        if let Err(reason) = item_code::ItemCode::parse(item_code) {
            return Err(ReplenishmentError::InvalidItemCode {
                code: item_code.to_owned(),
                reason,
            });
        }
        let properties = self.properties(request_id, message_id)?;
        if self.connection_per_call {
            let session = self.open(deadline, after).await?;
            let result = self
                .publish_on(&session, item_code, properties, deadline, after)
                .await;
            // The original's `Dispose`: close the channel and connection before returning.
            // A close that fails or runs out of time changes nothing about the message (it
            // was handed over, or the error above says why not); dropping the session then
            // closes the socket anyway.
            let _ = timeout_at(deadline, session.connection.close(200, "call done".into())).await;
            return result;
        }
        let session = self.shared_session(deadline, after).await?;
        let result = self
            .publish_on(&session, item_code, properties, deadline, after)
            .await;
        if let Err(error) = &result
            && !matches!(error, ReplenishmentError::Nacked)
        {
            session.unusable.store(true, Ordering::Relaxed);
        }
        result
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
        // Dropping the old handle closes that connection once no call uses it any more.
        *slot = None;
        let session = Arc::new(self.open(deadline, after).await?);
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }

    /// Connects, opens a channel, enables confirms (reliable mode) and declares the
    /// mode's queues.
    async fn open(
        &self,
        deadline: Instant,
        after: Duration,
    ) -> Result<Session, ReplenishmentError> {
        let timed_out = |stage| ReplenishmentError::AmqpTimedOut { after, stage };
        let (connection, channel) = timeout_at(deadline, self.connect())
            .await
            .map_err(|_| timed_out(AmqpStage::Connecting))??;
        let session = Session {
            connection,
            channel,
            unusable: AtomicBool::new(false),
        };
        timeout_at(deadline, self.declare(&session))
            .await
            .map_err(|_| timed_out(AmqpStage::Declaring))??;
        Ok(session)
    }

    async fn connect(&self) -> Result<(Connection, Channel), ReplenishmentError> {
        let connect_error = |error: lapin::Error| {
            let (url, reason) = (self.url.to_string(), describe(&error));
            // The broker answered: it is reachable, and said why it will not serve us.
            match amqp_reply(&error) {
                Some((ACCESS_REFUSED | NOT_ALLOWED, _)) => {
                    ReplenishmentError::AmqpRefused { url, reason }
                }
                _ => ReplenishmentError::AmqpConnect { url, reason },
            }
        };
        let properties =
            ConnectionProperties::default().with_connection_name(CONNECTION_NAME.into());
        let connection = Connection::connect_uri(self.url.uri().clone(), properties)
            .await
            .map_err(connect_error)?;
        let channel = connection.create_channel().await.map_err(connect_error)?;
        if self.mode == DeliveryMode::Reliable {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(connect_error)?;
        }
        Ok((connection, channel))
    }

    /// Declares [`DeliveryMode::queues`] as every side does ([`amqp_link::declare_queues`]).
    async fn declare(&self, session: &Session) -> Result<(), ReplenishmentError> {
        amqp_link::declare_queues(&session.channel, self.mode)
            .await
            .map_err(|error| match error {
                DeclareError::Mismatch {
                    wanted,
                    argument,
                    broker_said,
                    ..
                } => ReplenishmentError::QueueMismatch {
                    wanted,
                    argument,
                    broker_said,
                },
                DeclareError::Failed { source, .. } => self.failure(session, &source),
            })
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
        .map_err(|error| self.failure(session, &error))?;
        if !reliable {
            // The original's success: the publish call returned. The confirm future is
            // already resolved (`NotRequested`); nothing to wait for.
            return Ok(());
        }
        let confirmation = timeout_at(deadline, confirm)
            .await
            .map_err(|_| ReplenishmentError::ConfirmTimedOut { after })?
            .map_err(|error| self.failure(session, &error))?;
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

    /// Sorts an error on an open session: the broker closing the channel (a soft error,
    /// or the channel found closed on a live connection) or the connection being gone.
    fn failure(&self, session: &Session, error: &lapin::Error) -> ReplenishmentError {
        let channel_level = error.is_amqp_soft_error()
            || (matches!(error.kind(), ErrorKind::InvalidChannelState(..))
                && session.connection.status().connected());
        if channel_level {
            ReplenishmentError::ChannelClosed {
                reason: describe(error),
            }
        } else {
            ReplenishmentError::ConnectionLost {
                url: self.url.to_string(),
                reason: describe(error),
            }
        }
    }
}

/// The broker's reply code and text, when `error` is one it sent (a channel or connection
/// close), e.g. `(406, "PRECONDITION_FAILED - inequivalent arg 'durable' …")`.
fn amqp_reply(error: &lapin::Error) -> Option<(u16, String)> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => {
            Some((amqp.get_id(), one_line(amqp.get_message().as_str())))
        }
        _ => None,
    }
}

/// One line saying what went wrong, in the broker's or the socket's words.
fn describe(error: &lapin::Error) -> String {
    if let Some((code, text)) = amqp_reply(error) {
        return format!("{code} {text}");
    }
    match error.kind() {
        ErrorKind::IOError(io) | ErrorKind::RuntimeShutdownError(io) => {
            io_phrase(io).map_or_else(|| one_line(&io.to_string()), str::to_owned)
        }
        ErrorKind::MissingHeartbeatError => "no heartbeat from the broker in time".to_owned(),
        ErrorKind::InvalidConnectionState(state) => {
            format!("the connection is {}", format!("{state:?}").to_lowercase())
        }
        ErrorKind::InvalidChannelState(state, _) => {
            format!("the channel is {}", format!("{state:?}").to_lowercase())
        }
        _ => one_line(&error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faithful_messages_carry_no_properties_at_all() {
        let publisher = Publisher::new(
            AmqpUrl::parse("amqp://broker").unwrap(),
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
            AmqpUrl::parse("amqp://broker").unwrap(),
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
            AmqpUrl::parse("amqp://broker").unwrap(),
            DeliveryMode::Reliable,
            false,
        );
        let long = "x".repeat(256);
        let error = publisher.properties(&long, None).unwrap_err();
        assert_eq!(error.kind(), "invalid_request_id");
        assert!(error.to_string().contains("at most 255 bytes"), "{error}");
        assert!(publisher.properties(&"x".repeat(255), None).is_ok());
    }

    #[test]
    fn io_errors_are_described_in_words() {
        let refused: lapin::Error =
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        assert_eq!(describe(&refused), "connection refused");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error_naming_the_broker() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = AmqpUrl::parse(&format!("amqp://guest:secret@127.0.0.1:{port}/%2f")).unwrap();
        for per_call in [false, true] {
            let publisher = Publisher::new(url.clone(), DeliveryMode::Reliable, per_call);
            let after = Duration::from_secs(5);
            let started = Instant::now();
            let error = publisher
                .publish("123", "req", None, started + after, after)
                .await
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
        let url = AmqpUrl::parse(&format!("amqp://{}", listener.local_addr().unwrap())).unwrap();
        let publisher = Publisher::new(url, DeliveryMode::Faithful, false);
        let after = Duration::from_millis(300);
        let started = Instant::now();
        let error = publisher
            .publish("123", "req", None, started + after, after)
            .await
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
