//! `GET /metrics`: what the queue side is doing, in the Prometheus text exposition format
//! 0.0.4 — the worker's half of what the lab reads (the broker's half is the queue depth).
//!
//! Rendered by prometheus-client's Prometheus text encoder, like the API's (the content
//! type, names, types and help texts stay what scrapers already read). Every value is an
//! atomic; a scrape may see two counters a few increments apart, which Prometheus
//! tolerates. Every name starts with `purchasing_worker_`, so a lab scraping an API and a
//! worker never mixes them up.
//!
//! How the counters add up, per message received:
//! * reliable: `acked` (= `written` + `replayed`) + `rejected` + `requeued` (one per nack;
//!   the same message may come back and count again) + messages whose ack could not be
//!   sent because the connection was gone (the broker redelivers them; they show up again
//!   in `received` and `redelivered`) + those still in flight;
//! * faithful (auto-ack: the broker forgot each message when it pushed it): `written` +
//!   `lost` + in flight. `lost` counts messages that were invalid, whose store call failed,
//!   or that were pushed but not yet started when the worker stopped consuming.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use purchasing_service::metrics::{OrdersInFlight, ResidentMemory, help};

pub use purchasing_service::metrics::InFlight;

/// The media type of the text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The counters, by name, for [`Metrics::count`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Received,
    Redelivered,
    Written,
    Acked,
    Replayed,
    Rejected,
    Requeued,
    Lost,
    WithoutMessageId,
    ConnectionsLost,
    Unreadable,
}

impl Counter {
    const ALL: [Counter; 11] = [
        Counter::Received,
        Counter::Redelivered,
        Counter::Written,
        Counter::Acked,
        Counter::Replayed,
        Counter::Rejected,
        Counter::Requeued,
        Counter::Lost,
        Counter::WithoutMessageId,
        Counter::ConnectionsLost,
        Counter::Unreadable,
    ];

    /// The name (after `purchasing_worker_`, before `_total`) and help text.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Counter::Received => (
                "messages_received",
                "Deliveries taken from the broker, redeliveries included.",
            ),
            Counter::Redelivered => (
                "messages_redelivered",
                "Deliveries flagged redelivered by the broker (a consumer had them before: \
                 it crashed, lost its connection, or requeued them).",
            ),
            Counter::Written => ("orders_written", "Order lines appended to the orders file."),
            Counter::Acked => (
                "messages_acked",
                "Messages acknowledged after their order was written or replayed \
                 (reliable mode).",
            ),
            Counter::Replayed => (
                "messages_replayed",
                "Deduplication hits: the message id had already been written (a redelivery \
                 after a crash, or a publisher's retry); acknowledged, nothing written.",
            ),
            Counter::Rejected => (
                "messages_rejected",
                "Messages that can never succeed (not UTF-8, invalid item code or message \
                 id, message id reused for another code), rejected to the dead-letter queue.",
            ),
            Counter::Requeued => (
                "messages_requeued",
                "Messages nacked with requeue: a store failure that may pass (after a \
                 pause), or one that sticks until a restart.",
            ),
            Counter::Lost => (
                "messages_lost",
                "Faithful mode: auto-acknowledged messages never written (invalid, store \
                 failure, unreadable — counted once per connection it ended, though the \
                 broker may have pushed more behind it — or pushed but not started when \
                 consuming stopped).",
            ),
            Counter::WithoutMessageId => (
                "messages_without_message_id",
                "Reliable mode: messages without a message id, written without \
                 deduplication.",
            ),
            Counter::ConnectionsLost => (
                "connections_lost",
                "Broker connections lost while consuming; each is followed by reconnects.",
            ),
            Counter::Unreadable => (
                "unreadable_deliveries",
                "Connections ended by a delivery the AMQP client cannot parse (a property \
                 that is not UTF-8, from a foreign publisher): reliable mode redelivers it \
                 until the queue's delivery limit dead-letters it; faithful mode lost it.",
            ),
        }
    }
}

/// Every counter and gauge the worker exposes, and the registry that renders them in the
/// order they were registered.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// In the order of [`Counter::ALL`].
    counters: [PromCounter; Counter::ALL.len()],
    /// Orders whose store call is running now, and the work they hold.
    in_flight: OrdersInFlight,
    /// A connection and channel to the broker are open.
    connected: Gauge,
    store_failed: Gauge,
    resident_memory: ResidentMemory,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(0, 0)
    }
}

impl Metrics {
    pub fn new(alloc_chars: usize, prefetch: u16) -> Self {
        let mut registry = Registry::default();
        let counters: [PromCounter; Counter::ALL.len()] = Default::default();
        for (counter, metric) in Counter::ALL.into_iter().zip(&counters) {
            let (name, text) = counter.describe();
            registry.register(
                format!("purchasing_worker_{name}"),
                help(text),
                metric.clone(),
            );
        }
        let in_flight = OrdersInFlight::new(alloc_chars as u64);
        in_flight.register(
            &mut registry,
            "purchasing_worker_",
            "Orders whose store call is running now.",
        );
        let prefetch_gauge = Gauge::<i64>::default();
        prefetch_gauge.set(i64::from(prefetch));
        let connected = Gauge::default();
        let store_failed = Gauge::default();
        for (name, text, gauge) in [
            (
                "purchasing_worker_prefetch",
                "Most unacknowledged messages the broker hands this worker; 0 is no limit \
                 (faithful mode).",
                &prefetch_gauge,
            ),
            (
                "purchasing_worker_connected",
                "1 while a connection and channel to the broker are open.",
                &connected,
            ),
            (
                "purchasing_worker_store_failed",
                "1 while the store refuses orders until a restart (the worker then stops \
                 consuming).",
                &store_failed,
            ),
        ] {
            registry.register(name, help(text), gauge.clone());
        }
        let resident_memory = ResidentMemory::default();
        resident_memory.register(&mut registry);
        Self {
            registry,
            counters,
            in_flight,
            connected,
            store_failed,
            resident_memory,
        }
    }

    pub fn count(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].inc_by(n);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].get()
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    /// Counts an order as in flight until the returned guard drops. Taken inside the
    /// blocking closure, so the gauge is the orders really holding memory.
    pub fn order_started(&self) -> InFlight {
        self.in_flight.start()
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.count()
    }

    /// The exposition text; `store_failed` is whether the store refuses orders until a
    /// restart, `resident_bytes` the process's RSS if known.
    pub fn render(&self, store_failed: bool, resident_bytes: Option<u64>) -> String {
        self.in_flight.refresh();
        self.store_failed.set(i64::from(store_failed));
        self.resident_memory.set(resident_bytes);
        let mut text = String::with_capacity(4 * 1024);
        // Writing to a String cannot fail, and every name is valid.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_parse::{Scrape, Value};

    use super::*;

    #[test]
    fn counters_and_gauges_render_as_prometheus_text() {
        let metrics = Arc::new(Metrics::new(1000, 8));
        metrics.count(Counter::Received);
        metrics.add(Counter::Replayed, 2);
        metrics.set_connected(true);
        let guard = metrics.order_started();
        let text = metrics.render(false, Some(4096));
        for line in [
            "purchasing_worker_messages_received_total 1",
            "purchasing_worker_messages_replayed_total 2",
            "purchasing_worker_messages_acked_total 0",
            "purchasing_worker_orders_in_flight 1",
            "purchasing_worker_work_bytes_in_flight 1000",
            "purchasing_worker_prefetch 8",
            "purchasing_worker_connected 1",
            "purchasing_worker_store_failed 0",
            "process_resident_memory_bytes 4096",
            "# TYPE purchasing_worker_messages_rejected_total counter",
            "# HELP purchasing_worker_orders_written_total Order lines appended to the orders file.",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        drop(guard);
        let later = metrics.render(true, None);
        assert!(later.contains("\npurchasing_worker_orders_in_flight 0\n"));
        assert!(!later.contains("process_resident_memory_bytes"));

        // A real parser reads every family with its type, and every sample's value.
        let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        assert_eq!(parsed.samples.len(), 17);
        for sample in &parsed.samples {
            let value = match (&sample.value, sample.metric.ends_with("_total")) {
                (Value::Counter(v), true) | (Value::Gauge(v), false) => *v,
                (other, _) => panic!("{}: {other:?}", sample.metric),
            };
            assert!(value >= 0.0 && value.fract() == 0.0, "{}", sample.metric);
            assert!(
                parsed.docs.contains_key(&sample.metric),
                "{}",
                sample.metric
            );
        }
    }
}
