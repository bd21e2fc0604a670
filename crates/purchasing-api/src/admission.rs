//! Admission control: at most N orders in progress in the whole process, a short bounded
//! wait queue, and a fast `503 Service Unavailable` with `Retry-After` for the rest.
//!
//! Why each piece is the way it is:
//!
//! * **Not a tower layer, nor are the other protections.** A tower concurrency layer
//!   (`ConcurrencyLimitLayer`, `LoadShedLayer`) releases its permit when the inner
//!   service's response future completes, i.e. at the response; the admission permit
//!   must outlive it, for as long as the order's memory is held (see below). Deadlines are
//!   not tower's `TimeoutLayer`, which only drops the response future when time runs out:
//!   a deadline must stop work before it starts, as blocking work cannot be cancelled.
//!   The body is read by the handler within its own bounds, after routing. The
//!   conventional tower-http layers are used where they fit: request ids, tracing,
//!   panics (`crate::request_log`).
//! * **One semaphore, created once, in an `Arc`.** tower's `ConcurrencyLimitLayer` on an
//!   axum `Router` is rebuilt per connection (no limit at all) or per route (one limit
//!   each), and queues instead of refusing. Here the controller lives in the application
//!   state, created once, so every request draws from the same N permits.
//! * **A slot is taken only for a whole, valid order.** The handler reads the body and
//!   validates the item code first, then asks for a slot ([`Admission::admit`]). A client
//!   that sends its body slowly (or never) holds a connection, bounded by the body
//!   timeouts, but never a slot: four slow uploads cannot stop a node with four slots,
//!   and their upload time never teaches the hold-time estimate a wrong value.
//! * **The slot lives as long as the work, not the response.** `spawn_blocking` work
//!   cannot be cancelled: if the client goes away, the order still allocates its memory.
//!   So the handler moves the [`AdmissionSlot`] into the blocking closure; the slot frees
//!   only when the order's memory does.
//! * **A bounded queue with a short wait.** A few waiters keep the slots busy between one
//!   order finishing and the next arriving; more only hold connections and add latency.
//!   Waiting stops early when the request's deadline would no longer leave room for the
//!   work ([`crate::deadline`]).
//! * **Shedding is cheap.** A refused order is answered without allocating its work or
//!   touching the store (its body, at most a few KiB, has been read): a few microseconds of CPU, so refusing
//!   costs far less than serving and the server stays responsive under any spike.
//! * **A standing queue means overload: then wait only briefly** (CoDel, as in Facebook's
//!   "Fail at Scale"). While the queue keeps emptying, a waiter may wait the full queue
//!   timeout: that absorbs bursts. Once it has not been empty for [`STANDING_QUEUE`], the
//!   excess is not a burst but more load than capacity; every queued request would then
//!   wait the full timeout only to be refused, turning fast 503s into slow ones. So the
//!   wait shrinks to [`OVERLOAD_WAIT`] until the queue drains again.
//! * **Wait only when a slot is expected in time.** The controller knows when each
//!   order holding a slot started and how long a slot is typically held (a moving
//!   average of real hold times, which under load is longer than the start-up
//!   calibration, and their mean deviation). So it knows when the slot the newcomer
//!   would get should free: if that, plus four deviations, is later than the newcomer may
//!   wait, the answer is an immediate 503 rather than the same 503 after a wait in vain. A rate-based guess (position · work / N) is wrong
//!   exactly at the start of a burst, when all N orders began together.
//! * **`Retry-After` is an estimate of when a slot frees**, so well-behaved clients come
//!   back when they have a chance instead of immediately.
//! * **The number of slots can adapt** (`--max-in-flight adaptive`, [`Adaptive`]): after
//!   each order's fill the controller of [`capacity::adaptive`] reads how long the order
//!   waited for the CPU and moves the limit, never above the memory bound. Growing adds
//!   permits to the semaphore; shrinking takes free permits away at once and the rest as
//!   orders finish (their permits are forgotten instead of returned), so no order in
//!   progress is disturbed.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capacity::adaptive::{AdaptiveLimit, Change};
use purchasing_persistence::FillTiming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::deadline::{self, Deadline};
use crate::metrics::{Metrics, Stage};
use crate::problem::Problem;

/// Longest `Retry-After` advised: beyond a minute the estimate means little, and a
/// client should rather re-evaluate than sleep on it.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// How long the queue must have stayed non-empty to count as a standing queue (overload).
pub const STANDING_QUEUE: Duration = Duration::from_millis(100);

/// How long a queue wait that ran out keeps the controller in overload mode.
pub const OVERLOAD_MEMORY: Duration = Duration::from_secs(1);

/// The wait in the queue during overload: long enough to catch a slot freeing right now,
/// short enough that a refusal stays fast.
pub const OVERLOAD_WAIT: Duration = Duration::from_millis(1);

/// Gain of the moving average of slot hold times: each finished order moves it by 1/8 of
/// the difference, as TCP smooths round-trip times (RFC 6298) — steady against one odd
/// order, caught up with a real change within a dozen orders.
const HOLD_GAIN: f64 = 0.125;

/// Gain of the moving average of how far a hold strays from the typical one (RFC 6298's
/// β = 1/4).
const DEVIATION_GAIN: f64 = 0.25;

/// How many mean deviations of the hold time a predicted wait must leave room for before
/// a request is let into the queue — TCP's retransmission timeout is SRTT + 4·RTTVAR for
/// the same reason: a wait that runs out is the costly mistake (a 503 after the whole
/// queue timeout instead of at once), a refusal that could have waited costs little.
const DEVIATIONS: f64 = 4.0;

/// How many orders may be in progress and waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Orders in progress at once (≥ 1).
    pub max_in_flight: usize,
    /// Orders waiting for a slot; 0 refuses as soon as all slots are taken.
    pub queue: usize,
    /// Longest wait in the queue.
    pub queue_timeout: Duration,
    /// `Some`: `max_in_flight` is only where the limit starts; it adapts at run time.
    pub adaptive: Option<Adaptive>,
}

/// How an adaptive limit moves (see [`capacity::adaptive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adaptive {
    /// The hard bound: how many orders fit in memory.
    pub cap: usize,
    /// One fill's calibrated time: the controller's first estimate.
    pub fill_estimate: Duration,
}

/// The admission controller, created once per process and shared by every request.
#[derive(Debug)]
pub struct Admission {
    /// The N slots. Never closed.
    semaphore: Arc<Semaphore>,
    /// Since when each slot is held, and for how long slots are typically held.
    book: Arc<SlotBook>,
    limits: AdmissionLimits,
    /// One order's estimated time (the start-up calibration), for `Retry-After` and the
    /// deadline check.
    work_estimate: Duration,
    /// Counters and gauges this controller updates.
    metrics: Arc<Metrics>,
    /// Orders waiting for a slot now.
    queued: AtomicU64,
    /// When the queue was last seen empty, in µs since `epoch`.
    last_empty_us: AtomicU64,
    /// When a queued request last waited in vain, in µs since `epoch` (0: never).
    last_timeout_us: AtomicU64,
    epoch: Instant,
    /// The slots now (what the semaphore hands out, less permits still to forget).
    limit: AtomicUsize,
    /// `Some` for an adaptive limit.
    controller: Option<Mutex<AdaptiveLimit>>,
    /// Set when a request had to queue or was refused: the limit is what holds load back,
    /// so the controller may grow it. Cleared at each observation.
    demand: AtomicBool,
    /// Permits the semaphore still hands out beyond a lowered limit; each is forgotten
    /// when its order ends instead of going back.
    to_forget: Arc<AtomicUsize>,
}

impl Admission {
    pub fn new(limits: AdmissionLimits, work_estimate: Duration, metrics: Arc<Metrics>) -> Self {
        let limits = AdmissionLimits {
            max_in_flight: limits.max_in_flight.clamp(1, Semaphore::MAX_PERMITS),
            ..limits
        };
        let limits = AdmissionLimits {
            max_in_flight: match limits.adaptive {
                Some(adaptive) => limits.max_in_flight.min(adaptive.cap.max(1)),
                None => limits.max_in_flight,
            },
            ..limits
        };
        let controller = limits.adaptive.map(|adaptive| {
            Mutex::new(AdaptiveLimit::new(
                limits.max_in_flight,
                adaptive.cap,
                adaptive.fill_estimate,
                // At most one decrease per order's time: the orders queued before it
                // report the same congestion.
                work_estimate,
            ))
        });
        metrics.set_admission_limit(limits.max_in_flight);
        let to_forget = Arc::new(AtomicUsize::new(0));
        Self {
            semaphore: Arc::new(Semaphore::new(limits.max_in_flight)),
            book: Arc::new(SlotBook::new(
                limits.max_in_flight,
                work_estimate,
                Arc::clone(&to_forget),
            )),
            limit: AtomicUsize::new(limits.max_in_flight),
            limits,
            work_estimate,
            metrics,
            queued: AtomicU64::new(0),
            last_empty_us: AtomicU64::new(0),
            last_timeout_us: AtomicU64::new(0),
            epoch: Instant::now(),
            controller,
            demand: AtomicBool::new(false),
            to_forget,
        }
    }

    /// The number of slots now (fixed, or where the adaptive limit is).
    pub fn current_limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Orders waiting for a slot now.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// How long an order typically holds its slot (a moving average of real holds), and
    /// the mean deviation from it: what waits are predicted from.
    pub fn typical_hold(&self) -> (Duration, Duration) {
        (self.book.typical_hold(), self.book.hold_deviation())
    }

    /// Whether the limit adapts, i.e. the work should report its fills
    /// ([`Admission::observe_fill`]).
    pub fn is_adaptive(&self) -> bool {
        self.controller.is_some()
    }

    /// Feeds one order's fill to the adaptive controller and applies the limit it sets.
    /// Called from the order's blocking work; a no-op for a fixed limit.
    pub fn observe_fill(&self, timing: FillTiming) {
        let Some(controller) = &self.controller else {
            return;
        };
        let demand = self.demand.swap(false, Ordering::Relaxed);
        // Held while the semaphore is resized, so two observations cannot interleave
        // their changes. Never held across an await.
        let mut controller = controller
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let change = controller.observe(timing.waited, timing.filled, demand, Instant::now());
        self.metrics.set_adaptive_state(
            controller.smoothed_wait(),
            controller.target(),
            controller.smoothed_fill(),
        );
        if change == Change::Held {
            return;
        }
        let new = controller.limit();
        let old = self.limit.swap(new, Ordering::Relaxed);
        self.metrics.set_admission_limit(new);
        self.metrics.limit_changed(change == Change::Grew);
        if new > old {
            // Cancel permits still to be forgotten first; add the rest.
            let mut grow = new - old;
            grow -= take_up_to(&self.to_forget, grow);
            self.semaphore.add_permits(grow);
        } else {
            let shrink = old - new;
            let now = self.semaphore.forget_permits(shrink);
            self.to_forget.fetch_add(shrink - now, Ordering::Relaxed);
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records that nobody is waiting (a request got a slot without queueing, or the
    /// last waiter left).
    fn queue_was_empty(&self) {
        self.last_empty_us.store(self.now_us(), Ordering::Relaxed);
    }

    /// The longest a request that joins the queue now may wait: the queue timeout, or
    /// [`OVERLOAD_WAIT`] while a standing queue shows overload.
    pub fn wait_limit(&self) -> Duration {
        let now = self.now_us();
        let since_empty = now.saturating_sub(self.last_empty_us.load(Ordering::Relaxed));
        let last_timeout = self.last_timeout_us.load(Ordering::Relaxed);
        // A wait that ran out recently is overload too, even if one arrival since then
        // happened to find a free slot: otherwise the next waiter would wait in vain.
        let recent_timeout = last_timeout > 0
            && Duration::from_micros(now - last_timeout.min(now)) < OVERLOAD_MEMORY;
        if recent_timeout || Duration::from_micros(since_empty) > STANDING_QUEUE {
            OVERLOAD_WAIT.min(self.limits.queue_timeout)
        } else {
            self.limits.queue_timeout
        }
    }

    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Waits for a slot as a queued order, within the queue's bounds and the deadline.
    async fn wait(&self, deadline: Option<Deadline>) -> Result<AdmissionSlot, NotAdmitted> {
        self.demand.store(true, Ordering::Relaxed);
        let Some((_slot, position)) = QueueSlot::take(&self.queued, self.limits.queue) else {
            return Err(NotAdmitted::Shed(ShedReason::QueueFull));
        };
        // Refuse now what would only be refused later: if the slot this order would get
        // is not expected to free within the time it may wait, waiting would just turn a
        // fast 503 into a slow one.
        let limit = self.wait_limit();
        // After an adaptive limit was lowered, the next slots to free are not handed out
        // again (their permits are forgotten): a waiter is that much further back.
        let behind = self.to_forget.load(Ordering::Relaxed) as u64;
        let expected =
            self.book
                .expected_wait(position + behind, self.current_limit(), Instant::now());
        let margin = self.book.hold_deviation().mul_f64(DEVIATIONS);
        if expected + margin > limit {
            return Err(NotAdmitted::Shed(ShedReason::NoSlotExpected {
                limit,
                expected,
                margin,
            }));
        }
        // Waiting past the point where the work no longer fits the deadline is pointless.
        let room = deadline.map(|d| d.room_after(self.work_estimate, Instant::now()));
        let wait = room.map_or(limit, |room| room.min(limit));
        let bound_by_deadline = room.is_some_and(|room| room < limit);
        match tokio::time::timeout(wait, Arc::clone(&self.semaphore).acquire_owned()).await {
            Ok(Ok(permit)) => {
                let late =
                    deadline.and_then(|d| deadline::unmeetable_after_wait(d, self.work_estimate));
                match late {
                    Some(detail) => Err(NotAdmitted::Deadline(detail)),
                    None => Ok(self.book.occupy(permit)),
                }
            }
            Err(_elapsed) if bound_by_deadline => Err(NotAdmitted::Deadline(format!(
                "the request's deadline cannot be met: no order slot freed in time for an \
                 order of about {} ms; nothing was recorded. Retry later",
                self.work_estimate.as_millis()
            ))),
            Err(_elapsed) => Err({
                self.last_timeout_us
                    .store(self.now_us().max(1), Ordering::Relaxed);
                NotAdmitted::Shed(ShedReason::NoSlotFreed { waited: wait })
            }),
            Ok(Err(_closed)) => Err(NotAdmitted::Shed(ShedReason::ShuttingDown)),
        }
    }

    /// The refusal to answer, counted.
    fn refuse(&self, not_admitted: NotAdmitted) -> Refusal {
        match not_admitted {
            NotAdmitted::Shed(why) => self.shed(why),
            NotAdmitted::Deadline(detail) => {
                self.metrics.deadline_rejected(Stage::Queue);
                Refusal::Deadline { detail }
            }
        }
    }

    /// The 503's facts, counted. Allocates nothing beyond the small refusal.
    fn shed(&self, why: ShedReason) -> Refusal {
        self.metrics.shed();
        let in_progress = self.current_limit();
        Refusal::Shed {
            in_progress,
            why,
            retry_after_secs: retry_after_secs(self.work_estimate, self.queued(), in_progress),
        }
    }
}

/// Why a queued order was not admitted, before it is counted and answered.
enum NotAdmitted {
    Shed(ShedReason),
    /// 504: the detail.
    Deadline(String),
}

/// Why an order was not admitted: what [`Admission::admit`] refuses with, answered as a
/// problem document through [`IntoResponse`]. Counted in the metrics when it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 503 with `Retry-After`: every slot is taken and waiting would not (or did not) help.
    Shed {
        /// The orders in progress (the limit now).
        in_progress: usize,
        why: ShedReason,
        /// When a slot is expected to free (see [`retry_after_secs`]).
        retry_after_secs: u64,
    },
    /// 504: the request's deadline cannot be met after waiting for a slot.
    Deadline { detail: String },
}

/// Why a 503 was the answer; its text completes "N orders are in progress …".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// Every place in the wait queue is taken.
    QueueFull,
    /// The slot this order would get is not expected to free within the wait allowed.
    NoSlotExpected {
        limit: Duration,
        expected: Duration,
        margin: Duration,
    },
    /// It waited the whole time allowed.
    NoSlotFreed { waited: Duration },
    /// The controller is closed.
    ShuttingDown,
}

impl std::fmt::Display for ShedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShedReason::QueueFull => f.write_str("and the wait queue is full"),
            ShedReason::NoSlotExpected {
                limit,
                expected,
                margin,
            } => write!(
                f,
                "and none is expected to free within the {} ms a request may wait now \
                 (the next in about {} ms, give or take {} ms)",
                limit.as_millis(),
                expected.as_millis(),
                margin.as_millis()
            ),
            ShedReason::NoSlotFreed { waited } => {
                write!(f, "and no slot freed within {} ms", waited.as_millis())
            }
            ShedReason::ShuttingDown => f.write_str("and it is shutting down"),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Shed {
                in_progress,
                why,
                retry_after_secs: secs,
            } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the server is at capacity: {in_progress} orders are in progress {why}. \
                     Nothing was recorded; retry after {secs} s (with the same \
                     Idempotency-Key, if you sent one)"
                ),
            )
            .with_retry_after(secs)
            .into_response(),
            Refusal::Deadline { detail } => {
                Problem::new(StatusCode::GATEWAY_TIMEOUT, detail).into_response()
            }
        }
    }
}

/// When a refused client should come back, in whole seconds: one order's time for every
/// "round" of N orders ahead of it (those in progress and those queued), rounded up,
/// between 1 and [`MAX_RETRY_AFTER_SECS`].
pub fn retry_after_secs(work_estimate: Duration, queued: u64, max_in_flight: usize) -> u64 {
    let rounds = 1.0 + queued as f64 / max_in_flight.max(1) as f64;
    let secs = (work_estimate.as_secs_f64() * rounds).ceil();
    (secs as u64).clamp(1, MAX_RETRY_AFTER_SECS)
}

/// How long the order at 1-based queue `position` can expect to wait, given how long each
/// of the N slots still has to go (`remaining`, sorted ascending) and how long a slot is
/// typically held: the first N waiters get the slots in the order they free, the next N
/// those slots once more, one typical hold later, and so on.
pub fn expected_wait(remaining: &[Duration], typical_hold: Duration, position: u64) -> Duration {
    let slots = remaining.len().max(1) as u64;
    let ahead = position.saturating_sub(1);
    let rounds = (ahead / slots) as f64;
    let first_free = remaining
        .get((ahead % slots) as usize)
        .copied()
        .unwrap_or_default();
    first_free + typical_hold.mul_f64(rounds)
}

/// Who holds the N slots since when, and how long a slot is typically held.
#[derive(Debug)]
struct SlotBook {
    /// When each slot was taken; `None` while free. A plain mutex: it is touched once
    /// when an order is admitted, once when it ends and once per queued request, never
    /// across an await, and N is small.
    started: Mutex<Vec<Option<Instant>>>,
    /// The moving average of how long a slot is held, in µs. It starts at the calibrated
    /// work estimate; under load orders take longer (they share the CPU), and a prediction
    /// from the calibration alone would send waiters into waits they cannot win.
    typical_hold_us: AtomicU64,
    /// The moving mean deviation of a hold from the typical hold, µs.
    hold_deviation_us: AtomicU64,
    /// Shared with [`Admission`]: permits to forget instead of returning, while a lowered
    /// adaptive limit is being reached.
    to_forget: Arc<AtomicUsize>,
}

impl SlotBook {
    fn new(slots: usize, initial_hold: Duration, to_forget: Arc<AtomicUsize>) -> Self {
        // As RFC 6298 before its first measurement: a typical hold with a deviation of
        // half of it, so the first waits are cautious until real holds are seen.
        Self {
            started: Mutex::new(vec![None; slots]),
            typical_hold_us: AtomicU64::new(duration_us(initial_hold)),
            hold_deviation_us: AtomicU64::new(duration_us(initial_hold / 2)),
            to_forget,
        }
    }

    fn typical_hold_us(&self) -> &AtomicU64 {
        &self.typical_hold_us
    }

    fn hold_deviation(&self) -> Duration {
        Duration::from_micros(self.hold_deviation_us.load(Ordering::Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Instant>>> {
        // The book holds plain data that is valid after any panic.
        self.started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn typical_hold(&self) -> Duration {
        Duration::from_micros(self.typical_hold_us().load(Ordering::Relaxed))
    }

    /// Notes a slot taken now; the returned slot gives it back when dropped.
    fn occupy(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> AdmissionSlot {
        let started = Instant::now();
        let mut book = self.lock();
        // A free entry always exists: an entry is cleared before its permit returns to
        // the semaphore, so there are never more holders than entries.
        let index = book.iter().position(Option::is_none).unwrap_or_else(|| {
            book.push(None);
            book.len() - 1
        });
        book[index] = Some(started);
        AdmissionSlot {
            book: Arc::clone(self),
            index,
            started,
            permit: Some(permit),
        }
    }

    fn release(&self, index: usize, started: Instant) {
        let held = duration_us(started.elapsed());
        if let Some(entry) = self.lock().get_mut(index) {
            *entry = None;
        }
        // As RFC 6298: the deviation against the old average first, then the average.
        // A lost update between two orders ending together costs one sample: harmless.
        let typical = self.typical_hold_us().load(Ordering::Relaxed) as f64;
        let deviation = &self.hold_deviation_us;
        let off_by = (held as f64 - typical).abs();
        let old_deviation = deviation.load(Ordering::Relaxed) as f64;
        let new_deviation = old_deviation + DEVIATION_GAIN * (off_by - old_deviation);
        deviation.store(new_deviation.max(0.0) as u64, Ordering::Relaxed);
        let updated = typical + HOLD_GAIN * (held as f64 - typical);
        self.typical_hold_us()
            .store(updated.max(0.0) as u64, Ordering::Relaxed);
    }

    /// See [`expected_wait`]; an order past its typical hold is expected to end now.
    /// `limit` is the number of slots now: with an adaptive limit the book may hold more
    /// entries (free ones beyond a lowered limit are no slots) or fewer (slots added since
    /// are free).
    fn expected_wait(&self, position: u64, limit: usize, now: Instant) -> Duration {
        let hold = self.typical_hold();
        let mut remaining: Vec<Duration> = self
            .lock()
            .iter()
            .flatten()
            .map(|started| hold.saturating_sub(now.saturating_duration_since(*started)))
            .collect();
        // Free slots, if the limit leaves any, free now.
        let free = limit.saturating_sub(remaining.len());
        remaining.extend(std::iter::repeat_n(Duration::ZERO, free));
        remaining.sort_unstable();
        expected_wait(&remaining, hold, position)
    }
}

fn duration_us(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A held admission slot: the semaphore permit plus its entry in the [`SlotBook`]. The
/// slot frees when this is dropped — in the blocking work, once the order's memory is.
#[derive(Debug)]
pub struct AdmissionSlot {
    book: Arc<SlotBook>,
    index: usize,
    started: Instant,
    /// Returned to the semaphore after [`Drop::drop`] has cleared the entry, or forgotten
    /// while a lowered adaptive limit is still to be reached. `Some` until then.
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for AdmissionSlot {
    fn drop(&mut self) {
        self.book.release(self.index, self.started);
        if let Some(permit) = self.permit.take()
            && take_up_to(&self.book.to_forget, 1) == 1
        {
            permit.forget();
        }
    }
}

/// Takes up to `n` from `counter` (never below zero); returns how many it took.
fn take_up_to(counter: &AtomicUsize, n: usize) -> usize {
    let mut taken = 0;
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
        taken = left.min(n);
        Some(left - taken)
    });
    taken
}

/// A place in the wait queue; gives it back on drop (also when the request is dropped
/// because its client left).
struct QueueSlot<'a>(&'a AtomicU64);

impl<'a> QueueSlot<'a> {
    /// A place, and its 1-based position in the queue; `None` when the queue is full.
    fn take(queued: &'a AtomicU64, capacity: usize) -> Option<(Self, u64)> {
        queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < capacity as u64).then_some(q + 1)
            })
            .ok()
            .map(|before| (QueueSlot(queued), before + 1))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// A slot now, a slot after a short wait, or the refusal to send: 503 (or 504 when
    /// the deadline runs out while waiting).
    ///
    /// Called by the orders handler only once the whole body has been read and the order
    /// validated: a slow or abandoned upload holds no slot, and its upload time never
    /// enters the hold-time estimate. Keep the returned slot until the order's work ends
    /// (move it into the blocking closure).
    pub async fn admit(&self, deadline: Option<Deadline>) -> Result<AdmissionSlot, Refusal> {
        match Arc::clone(&self.semaphore).try_acquire_owned() {
            Ok(permit) => {
                // A slot without waiting: whoever queued before has been served.
                if self.queued() == 0 {
                    self.queue_was_empty();
                }
                Ok(self.book.occupy(permit))
            }
            Err(TryAcquireError::NoPermits) => {
                self.wait(deadline).await.map_err(|r| self.refuse(r))
            }
            Err(TryAcquireError::Closed) => Err(self.shed(ShedReason::ShuttingDown)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_grows_with_the_queue_and_stays_in_bounds() {
        let faithful = Duration::from_millis(580);
        assert_eq!(retry_after_secs(faithful, 0, 8), 1);
        assert_eq!(retry_after_secs(faithful, 8, 8), 2); // 1.16 s
        assert_eq!(retry_after_secs(Duration::from_millis(5), 0, 2), 1);
        assert_eq!(retry_after_secs(Duration::ZERO, 0, 1), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(30), 100, 1), 60);
    }

    #[test]
    fn queue_slots_are_bounded_and_given_back() {
        let queued = AtomicU64::new(0);
        let (a, first) = QueueSlot::take(&queued, 2).unwrap();
        let (b, second) = QueueSlot::take(&queued, 2).unwrap();
        assert_eq!((first, second), (1, 2), "positions in the queue");
        assert!(QueueSlot::take(&queued, 2).is_none());
        drop(a);
        assert_eq!(queued.load(Ordering::Relaxed), 1);
        assert!(QueueSlot::take(&queued, 2).is_some());
        drop(b);
        assert_eq!(queued.load(Ordering::Relaxed), 0);
        assert!(QueueSlot::take(&queued, 0).is_none());
    }

    fn test_metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(Default::default()))
    }

    fn controller(queue_timeout_ms: u64) -> Admission {
        let limits = AdmissionLimits {
            max_in_flight: 2,
            queue: 2,
            queue_timeout: Duration::from_millis(queue_timeout_ms),
            adaptive: None,
        };
        Admission::new(
            limits,
            Duration::from_millis(600),
            Arc::new(Metrics::new(Default::default())),
        )
    }

    #[tokio::test]
    async fn a_refusal_is_a_kind_the_caller_matches_and_answers_as_a_problem() {
        let admission = Admission::new(
            AdmissionLimits {
                max_in_flight: 1,
                queue: 0,
                queue_timeout: Duration::from_millis(10),
                adaptive: None,
            },
            Duration::from_millis(600),
            Arc::new(Metrics::new(Default::default())),
        );
        let _held = admission.admit(None).await.unwrap();
        let refusal = admission.admit(None).await.unwrap_err();
        let Refusal::Shed {
            in_progress: 1,
            why: ShedReason::QueueFull,
            retry_after_secs,
        } = refusal
        else {
            panic!("{refusal:?}")
        };
        let response = refusal.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()[axum::http::header::RETRY_AFTER],
            retry_after_secs.to_string().as_str()
        );
    }

    #[test]
    fn a_standing_queue_shortens_the_wait() {
        let admission = controller(250);
        admission.queue_was_empty();
        assert_eq!(
            admission.wait_limit(),
            Duration::from_millis(250),
            "a burst may wait"
        );
        // The queue has not been seen empty for longer than STANDING_QUEUE: overload.
        std::thread::sleep(STANDING_QUEUE + Duration::from_millis(20));
        assert_eq!(admission.wait_limit(), OVERLOAD_WAIT);
        admission.queue_was_empty();
        assert_eq!(
            admission.wait_limit(),
            Duration::from_millis(250),
            "drained: bursts wait again"
        );
        // Never longer than the configured timeout.
        assert_eq!(
            controller(2).wait_limit().min(Duration::from_millis(2)),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn the_expected_wait_follows_the_slots_in_the_order_they_free() {
        let ms = Duration::from_millis;
        let hold = ms(600);
        let remaining = [ms(0), ms(100), ms(550)];
        assert_eq!(expected_wait(&remaining, hold, 1), ms(0));
        assert_eq!(expected_wait(&remaining, hold, 2), ms(100));
        assert_eq!(expected_wait(&remaining, hold, 3), ms(550));
        // The fourth waiter gets the first slot again, one hold later.
        assert_eq!(expected_wait(&remaining, hold, 4), ms(600));
        assert_eq!(expected_wait(&remaining, hold, 8), ms(1300));
        assert_eq!(expected_wait(&[], hold, 1), ms(0));
    }

    #[test]
    fn at_the_start_of_a_burst_no_slot_is_expected_soon() {
        // All slots were taken together a moment ago: each still has most of its hold to
        // go, whereas an average rate (position · hold / N = 150 ms) would say "wait".
        let hold = Duration::from_millis(600);
        let book = Arc::new(SlotBook::new(4, hold, Default::default()));
        let semaphore = Arc::new(Semaphore::new(4));
        let slots: Vec<_> = (0..4)
            .map(|_| book.occupy(semaphore.clone().try_acquire_owned().unwrap()))
            .collect();
        let expected = book.expected_wait(1, 4, Instant::now());
        assert!(expected > Duration::from_millis(500), "{expected:?}");
        drop(slots);
        assert_eq!(semaphore.available_permits(), 4);
        assert_eq!(book.expected_wait(1, 4, Instant::now()), Duration::ZERO);
    }

    #[test]
    fn the_typical_hold_follows_real_holds() {
        let book = Arc::new(SlotBook::new(
            1,
            Duration::from_secs(10),
            Default::default(),
        ));
        let semaphore = Arc::new(Semaphore::new(1));
        assert_eq!(
            book.hold_deviation(),
            Duration::from_secs(5),
            "half, at first"
        );
        for _ in 0..80 {
            drop(book.occupy(semaphore.clone().try_acquire_owned().unwrap()));
        }
        // 80 near-zero holds pull 10 s down by (7/8)^80 ≈ 0.002 %; the deviation, which
        // follows how far each hold was from the shrinking average, shrinks with it.
        let typical = book.typical_hold();
        assert!(typical < Duration::from_millis(5), "{typical:?}");
        let deviation = book.hold_deviation();
        assert!(deviation < Duration::from_millis(50), "{deviation:?}");
    }

    #[tokio::test]
    async fn an_adaptive_limit_resizes_the_slots_without_disturbing_orders_in_progress() {
        let limits = AdmissionLimits {
            max_in_flight: 2,
            queue: 0,
            queue_timeout: Duration::from_millis(10),
            adaptive: Some(Adaptive {
                cap: 4,
                fill_estimate: Duration::from_millis(10),
            }),
        };
        // A zero work estimate: decreases are not spaced apart in this test.
        let admission = Admission::new(limits, Duration::ZERO, test_metrics());
        let fill = |waited_ms| FillTiming {
            waited: Duration::from_millis(waited_ms),
            filled: Duration::from_millis(10),
        };
        let a = admission.admit(None).await.unwrap();
        let b = admission.admit(None).await.unwrap();
        assert!(admission.admit(None).await.is_err(), "2 slots");

        // Demand (the refusal) and no wait for the CPU: one more slot.
        admission.observe_fill(fill(0));
        assert_eq!(admission.current_limit(), 3);
        let c = admission.admit(None).await.unwrap();
        assert!(admission.admit(None).await.is_err(), "3 slots");

        // A long wait for the CPU: halved, to 1, while 3 orders are still in progress.
        admission.observe_fill(fill(1000));
        assert_eq!(admission.current_limit(), 1);
        drop(a);
        drop(b);
        assert!(
            admission.admit(None).await.is_err(),
            "the two slots that ended were taken away, one order is still in progress"
        );
        drop(c);
        let d = admission.admit(None).await.unwrap();
        assert!(admission.admit(None).await.is_err(), "1 slot");
        drop(d);
        assert_eq!(admission.semaphore.available_permits(), 1);

        // Never above the memory bound, however much room the CPU has.
        for _ in 0..20 {
            let _refused = admission.admit(None).await.map(drop);
            let held: Vec<_> = (0..admission.current_limit())
                .map(|_| admission.semaphore.clone().try_acquire_owned().unwrap())
                .collect();
            assert!(admission.admit(None).await.is_err());
            drop(held);
            admission.observe_fill(fill(0));
        }
        assert_eq!(admission.current_limit(), 4);
        assert_eq!(admission.semaphore.available_permits(), 4);
    }
}
