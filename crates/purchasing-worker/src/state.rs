//! What the consuming side and the HTTP side share: the store, the metrics, and the
//! worker's phase. Its own module so both depend on it and not on each other.

use std::sync::{Arc, Mutex};

use amqp_link::AmqpUrl;
use purchasing_persistence::PurchaseOrderStore;
use wire_contract::amqp::Delivery;

use crate::metrics::Metrics;

/// Where the worker is in its life, as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not yet connected since the start: the broker may be down (it is retried).
    Connecting,
    /// Connected, queues declared, consumer registered: the only healthy phase.
    Consuming,
    /// The connection was lost; reconnecting with backoff.
    Reconnecting,
    /// The store refuses orders until a restart, so consuming was stopped.
    Failing,
    /// SIGTERM or Ctrl-C: finishing the orders in hand, then exiting.
    Stopping,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Consuming => "ok",
            Phase::Reconnecting => "reconnecting",
            Phase::Failing => "failing",
            Phase::Stopping => "stopping",
        }
    }
}

/// The phase and why the worker is in it (`None` while consuming).
#[derive(Debug)]
pub struct Status(Mutex<(Phase, Option<String>)>);

impl Default for Status {
    fn default() -> Self {
        Self(Mutex::new((Phase::Connecting, None)))
    }
}

impl Status {
    pub fn set(&self, phase: Phase, reason: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = (phase, reason);
    }

    pub fn get(&self) -> (Phase, Option<String>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The broker node the worker is on, or trying, now (password hidden): with several URLs
/// it changes at each failover, and `/health` says which.
#[derive(Debug, Default)]
pub struct Node(Mutex<String>);

impl Node {
    pub fn new(url: &AmqpUrl) -> Self {
        Self(Mutex::new(url.to_string()))
    }

    pub fn set(&self, url: &AmqpUrl) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = url.to_string();
    }

    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Everything both sides read. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The one store, called from the blocking pool for every order.
    pub store: Arc<PurchaseOrderStore>,
    /// Counted by the consumer, rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Set by the consumer, reported by `/health`.
    pub status: Arc<Status>,
    /// Reported by /health, so a probe can tell which kind of worker answers.
    pub delivery: Delivery,
    /// The node consumed from (or being connected to), for /health.
    pub broker: Arc<Node>,
    /// Faithful mode: deliveries pushed on a connection that was then lost, not yet
    /// handled. They were auto-acknowledged, so they are this process's to write; the next
    /// session handles them first, while its new consumer already takes what is published
    /// now (see `session`).
    pub backlog: Backlog,
}

/// See [`Shared::backlog`].
pub type Backlog = Arc<Mutex<Deliveries>>;
/// Deliveries in the order they were pushed.
pub type Deliveries = std::collections::VecDeque<lapin::message::Delivery>;

impl Shared {
    /// The oldest delivery kept from a lost connection (faithful mode).
    pub fn backlog_pop(&self) -> Option<lapin::message::Delivery> {
        self.backlog_lock().pop_front()
    }

    /// Keeps a delivery pushed on a connection that is gone, behind the others.
    pub fn backlog_push(&self, message: lapin::message::Delivery) {
        self.backlog_lock().push_back(message);
    }

    /// Empties the backlog (a shutdown loses it); how many it held.
    pub fn backlog_take_all(&self) -> usize {
        std::mem::take(&mut *self.backlog_lock()).len()
    }

    fn backlog_lock(&self) -> std::sync::MutexGuard<'_, Deliveries> {
        // Pushed and popped whole: a panic elsewhere cannot leave it half-changed.
        self.backlog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the store refuses orders until a restart, if it does (both parts).
    pub fn store_problems(&self) -> Vec<String> {
        [
            self.store.orders_file_failure(),
            self.store.journal_failure(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
