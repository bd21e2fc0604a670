//! The queues of a delivery mode, declared the one way every side declares them.
//!
//! The publisher and the worker both declare (declaring is idempotent while the
//! properties match), so either may start first; the lab and the tests declare the same
//! way to look at the queues. A broker that already has a queue with other properties
//! answers `406 PRECONDITION_FAILED` and closes the channel: [`DeclareError::Mismatch`]
//! then says which property differs and what to do — no reconnect can fix it.

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString};
use wire_contract::amqp::{
    DEAD_LETTER_EXCHANGE_ARG, DEAD_LETTER_ROUTING_KEY_ARG, DEFAULT_EXCHANGE, DELIVERY_LIMIT_ARG,
    Delivery, QUEUE_TYPE_ARG, QUORUM_QUEUE_TYPE, QueueSpec, mismatched_argument,
    queue_mismatch_hint,
};

/// Why the queues could not be declared.
#[derive(Debug, thiserror::Error)]
pub enum DeclareError {
    /// The queue exists with other properties (the broker's 406).
    #[error("{} (broker: {broker_said})", queue_mismatch_hint(*wanted, argument.as_deref()))]
    Mismatch {
        queue: &'static str,
        wanted: Delivery,
        /// The property the broker named, e.g. `x-queue-type` or `x-max-length`.
        argument: Option<String>,
        /// The broker's reply, code and text, on one line.
        broker_said: String,
    },
    /// Anything else: the connection or the channel failed.
    #[error("cannot declare the queue {queue}: {source}")]
    Failed {
        queue: &'static str,
        #[source]
        source: lapin::Error,
    },
}

/// Declares [`Delivery::queues`] in order (the dead-letter queue first, so the main
/// queue's dead-letter target exists when it is declared).
pub async fn declare_queues(channel: &Channel, delivery: Delivery) -> Result<(), DeclareError> {
    for spec in delivery.queues() {
        let options = QueueDeclareOptions {
            durable: spec.durable,
            ..QueueDeclareOptions::default()
        };
        if let Err(source) = channel
            .queue_declare(spec.name.into(), options, queue_arguments(&spec))
            .await
        {
            return Err(match precondition_failed(&source) {
                Some(broker_said) => DeclareError::Mismatch {
                    queue: spec.name,
                    wanted: delivery,
                    argument: mismatched_argument(&broker_said).map(str::to_owned),
                    broker_said,
                },
                None => DeclareError::Failed {
                    queue: spec.name,
                    source,
                },
            });
        }
    }
    Ok(())
}

/// The declare arguments of `spec`: none for the original's queue (`arguments: null`);
/// the queue type, the delivery limit and the dead-letter target through the default
/// exchange as the spec says. String values go as AMQP long strings, the only string type
/// RabbitMQ accepts in a table.
pub fn queue_arguments(spec: &QueueSpec) -> FieldTable {
    let mut arguments = FieldTable::default();
    let text = |value: &str| AMQPValue::LongString(LongString::from(value));
    if spec.quorum {
        arguments.insert(QUEUE_TYPE_ARG.into(), text(QUORUM_QUEUE_TYPE));
    }
    if let Some(limit) = spec.delivery_limit {
        arguments.insert(
            DELIVERY_LIMIT_ARG.into(),
            AMQPValue::LongLongInt(limit.into()),
        );
    }
    if let Some(target) = spec.dead_letter_to {
        arguments.insert(DEAD_LETTER_EXCHANGE_ARG.into(), text(DEFAULT_EXCHANGE));
        arguments.insert(DEAD_LETTER_ROUTING_KEY_ARG.into(), text(target));
    }
    arguments
}

/// The broker's words (`406 PRECONDITION_FAILED - …`, on one line) when `error` is its
/// refusal of a declare with other properties.
fn precondition_failed(error: &lapin::Error) -> Option<String> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp)
            if *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) =>
        {
            let text = amqp.get_message().as_str().replace(['\n', '\r'], " ");
            Some(format!("{} {}", amqp.get_id(), text))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use wire_contract::amqp::{DEAD_LETTER_QUEUE, DELIVERY_LIMIT};

    use super::*;

    #[test]
    fn reliable_declares_quorum_queues_with_a_delivery_limit_and_faithful_none() {
        let faithful = Delivery::Faithful.queues();
        assert!(queue_arguments(&faithful[0]).inner().is_empty());
        let reliable = Delivery::Reliable.queues();
        let dead_letter = queue_arguments(&reliable[0]);
        assert_eq!(dead_letter.inner().len(), 1, "{dead_letter:?}");
        let main = queue_arguments(&reliable[1]);
        let get = |name: &str| main.inner().get(name).cloned();
        assert_eq!(
            get(QUEUE_TYPE_ARG),
            Some(AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(
            get(DELIVERY_LIMIT_ARG),
            Some(AMQPValue::LongLongInt(DELIVERY_LIMIT.into()))
        );
        assert_eq!(
            get(DEAD_LETTER_ROUTING_KEY_ARG),
            Some(AMQPValue::LongString(DEAD_LETTER_QUEUE.into()))
        );
    }
}
