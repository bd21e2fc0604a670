//! One connection to one broker node: opening it (connect, a channel, confirms in reliable
//! mode, the mode's queues declared) and sorting what goes wrong on it into the crate's
//! errors. Which node to open it on is [`super::nodes`]'s choice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use amqp_link::{AmqpUrl, DeclareError};
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind};
use tokio::time::{Instant, timeout_at};

use wire_contract::amqp::Delivery as DeliveryMode;

use crate::error::{AmqpStage, ReplenishmentError, io_phrase};
use crate::wire::one_line;

/// AMQP reply codes of a broker that answered and refused: a login it turned down, and a
/// virtual host that does not exist or that the user may not use.
const ACCESS_REFUSED: u16 = 403;
const NOT_ALLOWED: u16 = 530;

/// The name the publisher's connections show in the broker's log and in `rabbitmqctl
/// list_connections`, so an operator (or a test) can tell them from the worker's.
pub const CONNECTION_NAME: &str = "inventory StockManager";

/// One open connection with its channel, the queues declared and (reliable mode) confirms
/// enabled.
#[derive(Debug)]
pub(super) struct Session {
    /// Kept for its state, and because dropping the last handle closes the connection.
    pub(super) connection: Connection,
    pub(super) channel: Channel,
    /// Set when a call on this session failed in a way that leaves it in doubt (timed out,
    /// lost, returned message, closed channel): the next call opens a new session. Set
    /// without the lock, so a failing call never waits for another caller's connect.
    unusable: AtomicBool,
    /// Which of the publisher's URLs this is (its place in the list), so that a loss
    /// moves the next connect on to the node after it.
    pub(super) node: usize,
    /// That URL: names the broker in errors (password hidden).
    pub(super) url: AmqpUrl,
}

impl Session {
    /// Connects to `url` (node `node` of the list), opens a channel, enables confirms
    /// (reliable mode) and declares the mode's queues, all by `deadline`; a timeout is
    /// reported as `after`.
    pub(super) async fn open(
        url: &AmqpUrl,
        node: usize,
        mode: DeliveryMode,
        deadline: Instant,
        after: Duration,
    ) -> Result<Session, ReplenishmentError> {
        let timed_out = |stage| ReplenishmentError::AmqpTimedOut { after, stage };
        let (connection, channel) = timeout_at(deadline, connect(url, mode))
            .await
            .map_err(|_| timed_out(AmqpStage::Connecting))??;
        let session = Session {
            connection,
            channel,
            unusable: AtomicBool::new(false),
            node,
            url: url.clone(),
        };
        timeout_at(deadline, session.declare(mode))
            .await
            .map_err(|_| timed_out(AmqpStage::Declaring))??;
        Ok(session)
    }

    pub(super) fn is_usable(&self) -> bool {
        !self.unusable.load(Ordering::Relaxed)
            && self.connection.status().connected()
            && self.channel.status().connected()
    }

    /// The next call must not use this session (see `unusable`).
    pub(super) fn set_unusable(&self) {
        self.unusable.store(true, Ordering::Relaxed);
    }

    /// Declares [`DeliveryMode::queues`] as every side does ([`amqp_link::declare_queues`]).
    async fn declare(&self, mode: DeliveryMode) -> Result<(), ReplenishmentError> {
        amqp_link::declare_queues(&self.channel, mode)
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
                DeclareError::Failed { source, .. } => self.failure(&source),
            })
    }

    /// Sorts an error on an open session: the broker closing the channel (a soft error,
    /// or the channel found closed on a live connection) or the connection being gone.
    pub(super) fn failure(&self, error: &lapin::Error) -> ReplenishmentError {
        let channel_level = error.is_amqp_soft_error()
            || (matches!(error.kind(), ErrorKind::InvalidChannelState(..))
                && self.connection.status().connected());
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

/// TCP and AMQP handshakes, a channel, and confirms in reliable mode.
async fn connect(
    url: &AmqpUrl,
    mode: DeliveryMode,
) -> Result<(Connection, Channel), ReplenishmentError> {
    let connect_error = |error: lapin::Error| {
        let (url, reason) = (url.to_string(), describe(&error));
        // The broker answered: it is reachable, and said why it will not serve us.
        match amqp_reply(&error) {
            Some((ACCESS_REFUSED | NOT_ALLOWED, _)) => {
                ReplenishmentError::AmqpRefused { url, reason }
            }
            _ => ReplenishmentError::AmqpConnect { url, reason },
        }
    };
    let properties = ConnectionProperties::default().with_connection_name(CONNECTION_NAME.into());
    let connection = Connection::connect_uri(url.uri().clone(), properties)
        .await
        .map_err(connect_error)?;
    let channel = connection.create_channel().await.map_err(connect_error)?;
    if mode == DeliveryMode::Reliable {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(connect_error)?;
    }
    Ok((connection, channel))
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
pub(super) fn describe(error: &lapin::Error) -> String {
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
    fn io_errors_are_described_in_words() {
        let refused: lapin::Error =
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        assert_eq!(describe(&refused), "connection refused");
    }
}
