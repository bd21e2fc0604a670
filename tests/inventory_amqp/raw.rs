//! A plain lapin client, to see what the publisher put on the broker.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use inventory::amqp::CONNECTION_NAME;
use lapin::message::BasicGetMessage;
use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties};

/// The contract's names, spelled out: the test checks the wire, not the constants.
pub(crate) const QUEUE: &str = "stock-replenishment-requests";
pub(crate) const DEAD_LETTER_QUEUE: &str = "stock-replenishment-requests.dead-letter";

pub(crate) async fn raw(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let channel = connection.create_channel().await.expect("a channel");
    (connection, channel)
}

pub(crate) async fn delete_queues(url: &str) {
    let (connection, channel) = raw(url).await;
    for queue in [QUEUE, DEAD_LETTER_QUEUE] {
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("delete {queue}: {e}"));
    }
    let _ = connection.close(200, "test".into()).await;
}

/// Declares `queue` on a fresh channel, as a worker of some mode would; the broker's
/// refusal (406 when the properties differ from the existing queue's) comes back as text.
pub(crate) async fn declare(
    url: &str,
    queue: &str,
    durable: bool,
    arguments: FieldTable,
) -> Result<u32, String> {
    let (connection, channel) = raw(url).await;
    let options = QueueDeclareOptions {
        durable,
        ..QueueDeclareOptions::default()
    };
    let result = channel
        .queue_declare(queue.into(), options, arguments)
        .await
        .map(|q| q.message_count())
        .map_err(|e| e.to_string());
    let _ = connection.close(200, "test".into()).await;
    result
}

/// The reliable main queue's arguments, spelled out from the contract's published names
/// (not built by the code under test): a quorum queue with a delivery limit that
/// dead-letters through the default exchange.
pub(crate) fn reliable_arguments() -> FieldTable {
    let mut arguments = quorum_arguments();
    arguments.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(10));
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("")),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(DEAD_LETTER_QUEUE)),
    );
    arguments
}

/// The reliable dead-letter queue's arguments: a quorum queue, nothing else.
pub(crate) fn quorum_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    arguments
}

/// Messages ready in `queue` (a passive declare).
pub(crate) async fn depth(url: &str, queue: &str) -> u32 {
    let (connection, channel) = raw(url).await;
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let count = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("passive declare of {queue}: {e}"))
        .message_count();
    let _ = connection.close(200, "test".into()).await;
    count
}

/// Takes the next message of `queue` off the broker (unacknowledged until the caller
/// acks or rejects it on `channel`), waiting up to 10 s for one: a confirmed publish is
/// there at once, a dead-lettered message a moment after its rejection.
pub(crate) async fn get(channel: &Channel, queue: &str) -> BasicGetMessage {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .unwrap_or_else(|e| panic!("basic.get on {queue}: {e}"));
        if let Some(message) = got {
            return message;
        }
        assert!(Instant::now() < deadline, "{queue} stayed empty for 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn text(value: &Option<ShortString>) -> Option<&str> {
    value.as_ref().map(ShortString::as_str)
}

/// Opens and closes a connection with a unique name and waits until the broker's log
/// shows it: the log is written in order but buffered, so once the fence is there every
/// connection before it is too. Returns the fence's name.
pub(crate) async fn log_fence(url: &str, log: &PathBuf) -> String {
    let name = format!("fence-{}", uuid::Uuid::new_v4());
    let properties = ConnectionProperties::default().with_connection_name(name.as_str().into());
    let connection = Connection::connect(url, properties)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let _ = connection.close(200, "fence".into()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(&name)
    {
        assert!(
            Instant::now() < deadline,
            "the broker's log {} never showed connection {name}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    name
}

/// Publisher connections the broker logged between two fences (RabbitMQ logs each
/// accepted and authenticated connection with its client-provided name).
pub(crate) fn publisher_connections_between(log: &PathBuf, from: &str, to: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .skip_while(|line| !line.contains(from))
        .take_while(|line| !line.contains(to))
        .filter(|line| line.contains(CONNECTION_NAME) && line.contains("authenticated"))
        .count()
}
