//! `GET /metrics`: what the queue side is doing, in the Prometheus text exposition format
//! 0.0.4 — the worker's half of what the lab reads (the broker's half is the queue depth).
//!
//! Written by hand like the API's: a dozen counters need no metrics framework. Every value
//! is an atomic updated with `Relaxed` ordering; a scrape may see two counters a few
//! increments apart, which Prometheus tolerates. Every name starts with
//! `purchasing_worker_`, so a lab scraping an API and a worker never mixes them up.
//!
//! How the counters add up, per message received:
//! * reliable: `acked` (= `written` + `replayed`) + `rejected` + `requeued` (one per nack;
//!   the same message may come back and count again) + messages whose ack could not be
//!   sent because the connection was gone (the broker redelivers them; they show up again
//!   in `received` and `redelivered`) + those still in flight;
//! * faithful (auto-ack: the broker forgot each message when it pushed it): `written` +
//!   `lost` + in flight. `lost` counts messages that were invalid, whose store call failed,
//!   or that were pushed but not yet started when the worker stopped consuming.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The media type of the text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every counter and gauge the worker exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Bytes one order holds (`--alloc-chars`), for the work-bytes gauge.
    alloc_chars: u64,
    /// The prefetch in force; 0 is the broker's "no limit" (faithful mode).
    prefetch: u64,
    /// Deliveries taken from the broker, redeliveries included.
    received: AtomicU64,
    /// Deliveries the broker flagged `redelivered`: handed to a consumer before (one that
    /// crashed, lost its connection or requeued it).
    redelivered: AtomicU64,
    /// Order lines appended.
    written: AtomicU64,
    /// Messages acknowledged after their order was written or replayed (reliable).
    acked: AtomicU64,
    /// Deduplication hits: the message id had completed before, nothing was written.
    replayed: AtomicU64,
    /// Rejected without requeue, so dead-lettered: they can never succeed (reliable).
    rejected: AtomicU64,
    /// Nacked with requeue: a failure that may pass, or the store failed for good.
    requeued: AtomicU64,
    /// Auto-acked messages never written (faithful; see the module doc).
    lost: AtomicU64,
    /// Reliable messages without a message id, written without deduplication.
    without_message_id: AtomicU64,
    /// Connections to the broker lost while consuming (each followed by a reconnect).
    connections_lost: AtomicU64,
    /// Orders whose store call is running now.
    in_flight: AtomicU64,
    /// A connection and channel to the broker are open.
    connected: AtomicBool,
}

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
}

impl Metrics {
    pub fn new(alloc_chars: usize, prefetch: u16) -> Self {
        Self {
            alloc_chars: alloc_chars as u64,
            prefetch: u64::from(prefetch),
            ..Self::default()
        }
    }

    pub fn count(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn add(&self, counter: Counter, n: u64) {
        self.counter(counter).fetch_add(n, Relaxed);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.counter(counter).load(Relaxed)
    }

    fn counter(&self, counter: Counter) -> &AtomicU64 {
        match counter {
            Counter::Received => &self.received,
            Counter::Redelivered => &self.redelivered,
            Counter::Written => &self.written,
            Counter::Acked => &self.acked,
            Counter::Replayed => &self.replayed,
            Counter::Rejected => &self.rejected,
            Counter::Requeued => &self.requeued,
            Counter::Lost => &self.lost,
            Counter::WithoutMessageId => &self.without_message_id,
            Counter::ConnectionsLost => &self.connections_lost,
        }
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Relaxed);
    }

    /// Counts an order as in flight until the returned guard drops. Taken inside the
    /// blocking closure, so the gauge is the orders really holding memory.
    pub fn order_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(Arc::clone(self))
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    /// The exposition text; `store_failed` is whether the store refuses orders until a
    /// restart, `resident_bytes` the process's RSS if known.
    pub fn render(&self, store_failed: bool, resident_bytes: Option<u64>) -> String {
        let mut out = Exposition(String::with_capacity(4 * 1024));
        for (counter, name, help) in [
            (
                Counter::Received,
                "messages_received_total",
                "Deliveries taken from the broker, redeliveries included.",
            ),
            (
                Counter::Redelivered,
                "messages_redelivered_total",
                "Deliveries flagged redelivered by the broker (a consumer had them before: \
                 it crashed, lost its connection, or requeued them).",
            ),
            (
                Counter::Written,
                "orders_written_total",
                "Order lines appended to the orders file.",
            ),
            (
                Counter::Acked,
                "messages_acked_total",
                "Messages acknowledged after their order was written or replayed \
                 (reliable mode).",
            ),
            (
                Counter::Replayed,
                "messages_replayed_total",
                "Deduplication hits: the message id had already been written (a redelivery \
                 after a crash, or a publisher's retry); acknowledged, nothing written.",
            ),
            (
                Counter::Rejected,
                "messages_rejected_total",
                "Messages that can never succeed (not UTF-8, invalid item code or message \
                 id, message id reused for another code), rejected to the dead-letter queue.",
            ),
            (
                Counter::Requeued,
                "messages_requeued_total",
                "Messages nacked with requeue: a store failure that may pass (after a \
                 pause), or one that sticks until a restart.",
            ),
            (
                Counter::Lost,
                "messages_lost_total",
                "Faithful mode: auto-acknowledged messages never written (invalid, store \
                 failure, or pushed but not started when consuming stopped).",
            ),
            (
                Counter::WithoutMessageId,
                "messages_without_message_id_total",
                "Reliable mode: messages without a message id, written without \
                 deduplication.",
            ),
            (
                Counter::ConnectionsLost,
                "connections_lost_total",
                "Broker connections lost while consuming; each is followed by reconnects.",
            ),
        ] {
            let name = format!("purchasing_worker_{name}");
            out.family(&name, "counter", help);
            out.sample(&name, self.get(counter));
        }
        let in_flight = self.in_flight();
        for (name, help, value) in [
            (
                "purchasing_worker_orders_in_flight",
                "Orders whose store call is running now.",
                in_flight,
            ),
            (
                "purchasing_worker_work_bytes_in_flight",
                "Bytes of simulated work held by the orders in flight (alloc_chars each; an \
                 upper bound with --release-early).",
                in_flight.saturating_mul(self.alloc_chars),
            ),
            (
                "purchasing_worker_prefetch",
                "Most unacknowledged messages the broker hands this worker; 0 is no limit \
                 (faithful mode).",
                self.prefetch,
            ),
            (
                "purchasing_worker_connected",
                "1 while a connection and channel to the broker are open.",
                u64::from(self.connected.load(Relaxed)),
            ),
            (
                "purchasing_worker_store_failed",
                "1 while the store refuses orders until a restart (the worker then stops \
                 consuming).",
                u64::from(store_failed),
            ),
        ] {
            out.family(name, "gauge", help);
            out.sample(name, value);
        }
        if let Some(rss) = resident_bytes {
            out.family(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes (VmRSS).",
            );
            out.sample("process_resident_memory_bytes", rss);
        }
        out.0
    }
}

/// An order in the blocking pool; counted down on drop.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Builds the exposition text.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, value: u64) {
        let _ = writeln!(self.0, "{name} {value}");
    }
}

#[cfg(test)]
mod tests {
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
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        drop(guard);
        assert!(
            metrics
                .render(true, None)
                .contains("\npurchasing_worker_orders_in_flight 0\n")
        );
        // Every sample line is `name value` with a name declared by a TYPE line.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.split_once(' ').unwrap();
            assert!(value.parse::<u64>().is_ok(), "{line}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{line}");
        }
    }
}
