//! The messaging half of the contract: the queue, its dead-letter queue, and what a
//! message carries. As in the original, one message is one order: the body is the item
//! code as UTF-8 text, published to the default exchange with the queue's name as the
//! routing key.

use std::fmt;
use std::str::FromStr;

/// The queue the original declared and consumed.
pub const QUEUE: &str = "stock-replenishment-requests";

/// Where the reliable worker puts a message that can never succeed (not UTF-8, an invalid
/// item code), instead of requeueing it for ever. Declared beside [`QUEUE`] in reliable
/// mode, and named as [`QUEUE`]'s `x-dead-letter-exchange`/`-routing-key` target.
pub const DEAD_LETTER_QUEUE: &str = "stock-replenishment-requests.dead-letter";

/// The default exchange: routes a message to the queue named by its routing key.
pub const DEFAULT_EXCHANGE: &str = "";

/// Queue argument naming the exchange a rejected message is republished to.
pub const DEAD_LETTER_EXCHANGE_ARG: &str = "x-dead-letter-exchange";

/// Queue argument naming the routing key of a dead-lettered message.
pub const DEAD_LETTER_ROUTING_KEY_ARG: &str = "x-dead-letter-routing-key";

/// The `content_type` property of a reliable message.
pub const CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// AMQP 0-9-1 `delivery_mode` of a message the broker writes to disk (1 is transient).
pub const PERSISTENT: u8 = 2;

/// Message header carrying the client's request id, as [`crate::http::REQUEST_ID_HEADER`]
/// does over HTTP. (The AMQP `message_id` property is the idempotency key: one per logical
/// order, the same on every publish of it.)
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// How an order travels through the queue. Both sides must agree: a broker refuses to
/// redeclare a queue with another durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Delivery {
    /// As the original: a non-durable queue, transient messages, no publisher confirms
    /// (success = the publish call returned), auto-ack on the consumer. Fast, and a
    /// consumer crash or a broker restart loses what was in flight.
    #[default]
    Faithful,
    /// At least once, effectively once: a durable queue with a dead-letter queue,
    /// persistent messages with a `message_id`, publisher confirms (success = the broker's
    /// ack), manual ack after the order line is written, deduplication by `message_id`.
    Reliable,
}

impl Delivery {
    pub const ALL: [Delivery; 2] = [Delivery::Faithful, Delivery::Reliable];

    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Faithful => "faithful",
            Delivery::Reliable => "reliable",
        }
    }

    /// Whether the queue is declared durable (survives a broker restart).
    pub fn durable_queue(self) -> bool {
        self == Delivery::Reliable
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not a delivery mode (what [`Delivery`]'s `FromStr` refuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDelivery(pub String);

impl fmt::Display for UnknownDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a delivery mode: use `faithful` or `reliable`",
            self.0
        )
    }
}

impl std::error::Error for UnknownDelivery {}

impl FromStr for Delivery {
    type Err = UnknownDelivery;

    fn from_str(s: &str) -> Result<Self, UnknownDelivery> {
        Delivery::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownDelivery(s.to_string()))
    }
}

/// One queue as both sides must declare it: the publisher and the worker each declare the
/// queues of their delivery mode (declaring is idempotent when the properties match), so
/// either may start first. Built from [`Delivery::queues`]; each side turns it into its
/// AMQP client's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: &'static str,
    /// Survives a broker restart (its persistent messages too).
    pub durable: bool,
    /// Messages the consumer rejects go to this queue (through the default exchange):
    /// the queue's `x-dead-letter-exchange` is [`DEFAULT_EXCHANGE`] and its
    /// `x-dead-letter-routing-key` this name.
    pub dead_letter_to: Option<&'static str>,
}

impl Delivery {
    /// The queues of this mode, the dead-letter queue first so that the main queue's
    /// dead-letter target exists when it is declared.
    pub fn queues(self) -> Vec<QueueSpec> {
        match self {
            // The original: `durable: false, exclusive: false, autoDelete: false,
            // arguments: null`.
            Delivery::Faithful => vec![QueueSpec {
                name: QUEUE,
                durable: false,
                dead_letter_to: None,
            }],
            Delivery::Reliable => vec![
                QueueSpec {
                    name: DEAD_LETTER_QUEUE,
                    durable: true,
                    dead_letter_to: None,
                },
                QueueSpec {
                    name: QUEUE,
                    durable: true,
                    dead_letter_to: Some(DEAD_LETTER_QUEUE),
                },
            ],
        }
    }
}

/// What to tell a user whose broker already has [`QUEUE`] declared with the other mode's
/// properties (the broker answers `PRECONDITION_FAILED` and closes the channel).
pub fn queue_mismatch_hint(wanted: Delivery) -> String {
    format!(
        "the broker already has the queue {QUEUE} declared with other properties than \
         --delivery {wanted} needs (a queue cannot change its durability); delete it \
         (e.g. rabbitmqctl delete_queue {QUEUE}) or use the mode it was declared for"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_modes_parse_and_print() {
        for d in Delivery::ALL {
            assert_eq!(d.to_string().parse::<Delivery>(), Ok(d));
        }
        assert_eq!("Reliable".parse::<Delivery>(), Ok(Delivery::Reliable));
        assert!(
            "durable"
                .parse::<Delivery>()
                .unwrap_err()
                .to_string()
                .contains("faithful")
        );
        assert_eq!(Delivery::default(), Delivery::Faithful);
        assert!(Delivery::Reliable.durable_queue() && !Delivery::Faithful.durable_queue());
    }

    #[test]
    fn reliable_declares_a_durable_queue_that_dead_letters_into_a_durable_queue() {
        let faithful = Delivery::Faithful.queues();
        assert_eq!(faithful.len(), 1);
        assert!(!faithful[0].durable && faithful[0].dead_letter_to.is_none());
        let reliable = Delivery::Reliable.queues();
        assert_eq!(reliable[0].name, DEAD_LETTER_QUEUE);
        assert_eq!(reliable[1].dead_letter_to, Some(DEAD_LETTER_QUEUE));
        assert!(reliable.iter().all(|q| q.durable));
        assert!(queue_mismatch_hint(Delivery::Reliable).contains("delete_queue"));
    }

    #[test]
    fn the_queue_is_the_originals() {
        assert_eq!(QUEUE, "stock-replenishment-requests");
        assert!(DEAD_LETTER_QUEUE.starts_with(QUEUE));
    }
}
