//! The application's state: the protections in force and what the handlers and layers
//! share. Its own module so the router ([`crate::app`]), the handlers ([`crate::routes`])
//! and the server ([`crate::server`]) all depend on it, and it on none of them.

use std::sync::Arc;
use std::time::Duration;

use purchasing_persistence::PurchaseOrderStore;

use crate::admission::{Admission, AdmissionLimits};
use crate::body::BodyTimeouts;
use crate::deadline::Deadlines;
use crate::limits::Sizing;
use crate::metrics::{self, Metrics};
use crate::work_pool::WorkPool;

/// The protections in force, resolved to numbers (`auto` already sized: see
/// [`crate::server`]). The default is none: the faithful system.
#[derive(Debug, Clone, Default)]
pub struct Protections {
    /// Admission control on the orders route.
    pub admission: Option<AdmissionLimits>,
    /// The server-side maximum request time; `Some` turns deadlines on.
    pub max_request: Option<Duration>,
    /// Honour `Idempotency-Key` (the store must have been opened with idempotency).
    pub idempotency: bool,
    /// One order's estimated time (delay + calibrated allocation): the room a deadline
    /// must leave, and the base of `Retry-After`. Known when admission or deadlines are on.
    pub work_estimate: Option<Duration>,
    /// How `--max-in-flight auto` was sized, when it was.
    pub sizing: Option<Sizing>,
    /// The async side runs at a lower CPU priority than the orders' work (see
    /// [`crate::priority`]); applied by [`crate::server`] to the runtime's threads.
    pub prioritize_work: bool,
    /// Most threads working on orders at once (`--max-blocking-threads`); `None`: the
    /// default.
    pub work_threads: Option<usize>,
    /// How long an order's body may take to arrive. Not a protection one opts into:
    /// every configuration has it (the original's IIS had its own read timeouts too).
    pub body_timeouts: BodyTimeouts,
}

impl Protections {
    /// The facts `/metrics` shows beside its counters, as plain numbers.
    fn metrics_settings(&self, alloc_chars: usize) -> metrics::Settings {
        let admission = self.admission.as_ref();
        metrics::Settings {
            alloc_chars: alloc_chars as u64,
            admission: admission.is_some(),
            adaptive_cap: admission
                .and_then(|a| a.adaptive)
                .map_or(0, |a| a.cap as u64),
            queue_limit: admission.map_or(0, |a| a.queue as u64),
            work_estimate: self.work_estimate,
            sizing: self.sizing.clone(),
        }
    }
}

/// What the handlers and layers share.
#[derive(Clone)]
pub struct AppState {
    /// The store is `Sync` and serialises its own appends; handlers share one instance.
    pub store: Arc<PurchaseOrderStore>,
    /// Counters for `/metrics`, updated by the layers and the handler.
    pub metrics: Arc<Metrics>,
    /// Whether the orders handler reads the `Idempotency-Key` header.
    pub idempotency: bool,
    /// The threads that do the orders' work.
    pub work: WorkPool,
    /// How long an order's body may take to arrive.
    pub body_timeouts: BodyTimeouts,
    /// The admission controller, created once so its limit is global (see
    /// [`crate::admission`]); the orders handler asks it for a slot.
    pub(crate) admission: Option<Arc<Admission>>,
    /// The deadline policy, when deadlines are on; the router puts its layer in front of
    /// the orders route.
    pub(crate) deadlines: Option<Arc<Deadlines>>,
}

impl AppState {
    /// The faithful system: no protection.
    pub fn new(store: Arc<PurchaseOrderStore>) -> Self {
        Self::with_protections(store, &Protections::default())
    }

    pub fn with_protections(store: Arc<PurchaseOrderStore>, protections: &Protections) -> Self {
        let metrics = Arc::new(Metrics::new(
            protections.metrics_settings(store.workload().alloc_chars),
        ));
        let work_estimate = protections.work_estimate.unwrap_or_default();
        Self {
            admission: protections
                .admission
                .map(|limits| Arc::new(Admission::new(limits, work_estimate, metrics.clone()))),
            deadlines: protections
                .max_request
                .map(|max| Arc::new(Deadlines::new(max, work_estimate, metrics.clone()))),
            idempotency: protections.idempotency,
            work: WorkPool::new(
                protections
                    .work_threads
                    .unwrap_or(crate::config::DEFAULT_MAX_BLOCKING_THREADS),
                "order",
            ),
            body_timeouts: protections.body_timeouts,
            store,
            metrics,
        }
    }
}
