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

/// Queue argument choosing the queue's type (RabbitMQ 3.8+): absent for a classic queue.
pub const QUEUE_TYPE_ARG: &str = "x-queue-type";

/// [`QUEUE_TYPE_ARG`]'s value for a quorum queue: replicated by Raft over the broker's
/// nodes (one replica on a single broker), always durable, and — what the reliable mode
/// needs it for even on one node — it counts how often each message was delivered
/// without being acknowledged, including deliveries whose consumer's connection died.
pub const QUORUM_QUEUE_TYPE: &str = "quorum";

/// Queue argument (quorum queues): a message delivered this many times without being
/// acknowledged is dead-lettered on its next return instead of being redelivered.
pub const DELIVERY_LIMIT_ARG: &str = "x-delivery-limit";

/// The reliable queue's [`DELIVERY_LIMIT_ARG`]. A message that takes the consumer's
/// connection down (one the client library cannot parse) comes back once per connection
/// it kills; without a limit it would stop the queue for ever. Ten is far above what a
/// valid order meets — it is redelivered only when its worker dies or loses the broker
/// while holding it, or after a store failure that may pass (one requeue a second) — and
/// low enough that a poison message is set aside within half a minute of reconnect
/// backoff.
pub const DELIVERY_LIMIT: u32 = 10;

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
    /// At least once, effectively once: a quorum queue (durable, with a delivery limit)
    /// and a dead-letter queue, persistent messages with a `message_id`, publisher
    /// confirms (success = the broker's ack), manual ack after the order line is
    /// written, deduplication by `message_id`.
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
/// either may start first. Built from [`Delivery::queues`]; the `amqp-link` crate turns
/// it into the AMQP client's call, for every side alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: &'static str,
    /// Survives a broker restart (its persistent messages too).
    pub durable: bool,
    /// A quorum queue ([`QUORUM_QUEUE_TYPE`]) rather than a classic one.
    pub quorum: bool,
    /// [`DELIVERY_LIMIT_ARG`], for a quorum queue that dead-letters past it.
    pub delivery_limit: Option<u32>,
    /// Messages the consumer rejects go to this queue (through the default exchange):
    /// the queue's `x-dead-letter-exchange` is [`DEFAULT_EXCHANGE`] and its
    /// `x-dead-letter-routing-key` this name.
    pub dead_letter_to: Option<&'static str>,
}

impl Delivery {
    /// The orders queue's type as RabbitMQ names it: `classic` (faithful: on one node,
    /// gone with it) or [`QUORUM_QUEUE_TYPE`] (reliable: replicated to every node).
    pub fn queue_type(self) -> &'static str {
        let main = self.queues().into_iter().find(|q| q.name == QUEUE);
        if main.is_some_and(|q| q.quorum) {
            QUORUM_QUEUE_TYPE
        } else {
            "classic"
        }
    }

    /// The queues of this mode, the dead-letter queue first so that the main queue's
    /// dead-letter target exists when it is declared.
    pub fn queues(self) -> Vec<QueueSpec> {
        match self {
            // The original: `durable: false, exclusive: false, autoDelete: false,
            // arguments: null`.
            Delivery::Faithful => vec![QueueSpec {
                name: QUEUE,
                durable: false,
                quorum: false,
                delivery_limit: None,
                dead_letter_to: None,
            }],
            Delivery::Reliable => vec![
                QueueSpec {
                    name: DEAD_LETTER_QUEUE,
                    durable: true,
                    quorum: true,
                    delivery_limit: None,
                    dead_letter_to: None,
                },
                QueueSpec {
                    name: QUEUE,
                    durable: true,
                    quorum: true,
                    delivery_limit: Some(DELIVERY_LIMIT),
                    dead_letter_to: Some(DEAD_LETTER_QUEUE),
                },
            ],
        }
    }
}

/// What to tell a user whose broker already has [`QUEUE`] declared with other properties
/// than `wanted` needs (the broker answers `PRECONDITION_FAILED` and closes the channel).
/// `argument` is the property the broker named (`durable`, `x-queue-type`,
/// `x-max-length`, …), when its answer named one.
pub fn queue_mismatch_hint(wanted: Delivery, argument: Option<&str>) -> String {
    let which = match argument {
        Some(argument) => format!("its {argument} differs from what --delivery {wanted} declares"),
        None => format!("its properties differ from what --delivery {wanted} declares"),
    };
    format!(
        "the broker already has the queue {QUEUE} and {which} (a queue cannot change its \
         properties: it was left by the other mode, by an older version of this project — \
         whose reliable queue was a classic one — or by another application); delete it \
         (e.g. rabbitmqctl delete_queue {QUEUE}) or use the mode it was declared for"
    )
}

/// The property a RabbitMQ `PRECONDITION_FAILED` answer to a declare names, e.g.
/// `durable` in "PRECONDITION_FAILED - inequivalent arg 'durable' for queue …".
pub fn mismatched_argument(broker_said: &str) -> Option<&str> {
    let rest = &broker_said[broker_said.find("inequivalent arg '")? + "inequivalent arg '".len()..];
    rest.split('\'').next().filter(|a| !a.is_empty())
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
        assert!(reliable.iter().all(|q| q.durable && q.quorum));
        assert_eq!(reliable[1].delivery_limit, Some(DELIVERY_LIMIT));
        assert!(!faithful[0].quorum && faithful[0].delivery_limit.is_none());
        assert!(queue_mismatch_hint(Delivery::Reliable, None).contains("delete_queue"));
        let hint = queue_mismatch_hint(Delivery::Reliable, Some("x-max-length"));
        assert!(hint.contains("its x-max-length differs"), "{hint}");
    }

    #[test]
    fn the_argument_a_refusal_names_is_found() {
        let said = "406 PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue \
                    'stock-replenishment-requests' in vhost '/': received none but current \
                    is the value '10' of type 'long'";
        assert_eq!(mismatched_argument(said), Some("x-max-length"));
        assert_eq!(mismatched_argument("406 PRECONDITION_FAILED - other"), None);
    }

    #[test]
    fn the_queue_is_the_originals() {
        assert_eq!(QUEUE, "stock-replenishment-requests");
        assert!(DEAD_LETTER_QUEUE.starts_with(QUEUE));
    }
}
