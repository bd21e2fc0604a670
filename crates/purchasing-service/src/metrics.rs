//! What both services expose the same way in `/metrics`: the resident memory of the
//! process and the orders whose store call is running now (with the bytes of simulated
//! work they hold), each defined once and registered by each service under its own
//! prefix (`purchasing_` for the API, `purchasing_worker_` for the worker).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// The registry's help text: prometheus-client ends every help with a full stop of its
/// own, so ours (written as sentences) are handed over without theirs.
pub fn help(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

/// A count or size as a gauge's value, `i64::MAX` past it (nothing real gets there).
pub fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `process_resident_memory_bytes`, present only while the memory can be read. Set at
/// each scrape by the service (which reads `capacity::resident_memory_bytes`), so a test
/// can hand it any number. Cheap to clone: clones share the value.
#[derive(Debug, Clone)]
pub struct ResidentMemory(Arc<AtomicI64>);

impl Default for ResidentMemory {
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(-1)))
    }
}

impl ResidentMemory {
    /// The value the next scrape shows; `None`: the family is left out.
    pub fn set(&self, bytes: Option<u64>) {
        self.0.store(bytes.map_or(-1, saturating_i64), Relaxed);
    }

    /// Adds the family to `registry`, at this point of the exposition.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }
}

impl Collector for ResidentMemory {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let bytes = self.0.load(Relaxed);
        if bytes >= 0 {
            let gauge = ConstGauge::new(bytes);
            let metric = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes (VmRSS).",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// `work_bytes_in_flight`'s help, the same in both services.
const WORK_BYTES_HELP: &str = "Bytes of simulated work held by the orders in flight \
     (alloc_chars each; an upper bound with --release-early).";

/// The orders whose store call is running now, counted by an [`InFlight`] guard taken
/// inside the blocking closure (so the count is the orders really holding memory), and
/// the bytes of work they hold. Cheap to clone: clones share the gauges.
#[derive(Debug, Clone, Default)]
pub struct OrdersInFlight {
    orders: Gauge,
    work_bytes: Gauge,
    /// Bytes one order holds (`--alloc-chars`).
    alloc_chars: i64,
}

impl OrdersInFlight {
    pub fn new(alloc_chars: u64) -> Self {
        Self {
            alloc_chars: saturating_i64(alloc_chars),
            ..Self::default()
        }
    }

    /// Registers `{prefix}orders_in_flight` (with `orders_help`, which says where the
    /// orders run) and `{prefix}work_bytes_in_flight`, in that order.
    pub fn register(&self, registry: &mut Registry, prefix: &str, orders_help: &str) {
        registry.register(
            format!("{prefix}orders_in_flight"),
            help(orders_help),
            self.orders.clone(),
        );
        registry.register(
            format!("{prefix}work_bytes_in_flight"),
            help(WORK_BYTES_HELP),
            self.work_bytes.clone(),
        );
    }

    /// Counts an order in flight until the returned guard drops.
    pub fn start(&self) -> InFlight {
        self.orders.inc();
        InFlight(self.orders.clone())
    }

    /// Orders in flight now.
    pub fn count(&self) -> u64 {
        u64::try_from(self.orders.get()).unwrap_or(0)
    }

    /// Brings the work-bytes gauge up to date; call it before rendering.
    pub fn refresh(&self) {
        self.work_bytes
            .set(self.orders.get().saturating_mul(self.alloc_chars));
    }
}

/// An order in the blocking pool; counted down on drop.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::prometheus_text::encode;

    use super::*;

    fn render(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn the_guard_counts_and_the_memory_shows_only_when_known() {
        let mut registry = Registry::default();
        let in_flight = OrdersInFlight::new(1000);
        in_flight.register(&mut registry, "svc_", "Orders running now.");
        let memory = ResidentMemory::default();
        memory.register(&mut registry);
        let first = in_flight.start();
        let _second = in_flight.start();
        drop(first);
        in_flight.refresh();
        let text = render(&registry);
        assert!(text.contains("\nsvc_orders_in_flight 1\n"), "{text}");
        assert!(text.contains("\nsvc_work_bytes_in_flight 1000\n"), "{text}");
        assert!(!text.contains("process_resident_memory_bytes"), "{text}");
        memory.set(Some(4096));
        assert!(render(&registry).contains("\nprocess_resident_memory_bytes 4096\n"));
        assert_eq!(in_flight.count(), 1);
    }
}
