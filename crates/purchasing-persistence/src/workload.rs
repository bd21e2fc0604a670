//! The simulated expensive work of one order: the string allocated, filled and held (the
//! original's `new string('a', 150000000)`), the sleep (its `Thread.Sleep(500)`), the gate
//! that bounds concurrent fills, and the stepwise release of the string.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::StoreError;

/// Characters allocated per order by default: the article's `new string('a', 150000000)`.
/// A Rust `String` of ASCII is one byte per character, so this is 150 MB held per order.
pub const DEFAULT_ALLOC_CHARS: usize = 150_000_000;

/// How long each order blocks its thread by default: the original's `Thread.Sleep(500)`.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(500);

/// The simulated expensive work done for every order.
///
/// The defaults are the faithful workload; tests and cheap experiments use tiny values
/// (for example 1,000 characters and 5 ms) so they can run hundreds of orders at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Characters of the string allocated, filled and held for the whole call.
    pub alloc_chars: usize,
    /// How long the calling thread is blocked (a sleep, not CPU work).
    pub delay: Duration,
    /// Drop the string right after filling it instead of holding it through the sleep.
    ///
    /// In .NET the string is unreachable after it is built, so a garbage collection
    /// during the sleep may reclaim it; Rust frees deterministically at end of scope.
    /// `false` (the default) is the worst case the article describes: memory held for
    /// the whole request. `true` mimics a runtime whose GC collects it early.
    pub release_early: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            alloc_chars: DEFAULT_ALLOC_CHARS,
            delay: DEFAULT_DELAY,
            release_early: false,
        }
    }
}

/// How one order's fill went; see `PurchaseOrderStore::submit_observed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTiming {
    /// Time waiting for a turn at the fill gate (zero without a gate).
    pub waited: Duration,
    /// Time allocating and filling the string.
    pub filled: Duration,
}

/// A counting semaphore (std only) bounding the orders that fill their string at once.
#[derive(Debug)]
pub(crate) struct FillGate {
    filling: Mutex<usize>,
    turn_freed: Condvar,
    max: usize,
}

/// One order's turn to fill; gives it back on drop.
pub(crate) struct FillTurn<'a>(&'a FillGate);

impl FillGate {
    pub(crate) fn new(max: usize) -> Self {
        FillGate {
            filling: Mutex::new(0),
            turn_freed: Condvar::new(),
            max: max.max(1),
        }
    }

    pub(crate) fn enter(&self) -> FillTurn<'_> {
        let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
        while *filling >= self.max {
            filling = self
                .turn_freed
                .wait(filling)
                .unwrap_or_else(|p| p.into_inner());
        }
        *filling += 1;
        FillTurn(self)
    }
}

impl Drop for FillTurn<'_> {
    fn drop(&mut self) {
        let mut filling = self.0.filling.lock().unwrap_or_else(|p| p.into_inner());
        *filling -= 1;
        self.0.turn_freed.notify_one();
    }
}

/// How much of an order's string is given back to the system at a time.
const RELEASE_STEP: usize = 8 << 20;

/// Frees an order's string a slice at a time instead of in one go.
///
/// Why: a large allocation is its own memory mapping, and dropping it unmaps 150 MB in
/// one system call that holds the process's address-space lock for 10–30 ms. Every
/// other thread that needs the lock meanwhile waits — measured: the async worker growing
/// its allocator heap (`mprotect`) while answering a 503, which turned a refusal decided
/// in microseconds into one answered in 11 ms. Shrinking the buffer in 8 MiB steps
/// (each a `realloc` the allocator serves by unmapping the tail in place) does the same
/// total work but holds the lock for well under a millisecond at a time. Nothing else
/// changes: the memory is held for exactly as long as before.
pub(crate) fn release_in_steps(work: String) {
    let mut bytes = work.into_bytes();
    while bytes.len() > RELEASE_STEP {
        bytes.truncate(bytes.len() - RELEASE_STEP);
        bytes.shrink_to_fit();
    }
}

/// The original's `new string('a', n)`: a string of `chars` `'a'`s with every byte
/// written (so every page is really touched), allocated fallibly.
pub(crate) fn simulate_expensive_work(chars: usize) -> Result<String, StoreError> {
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(chars)
        .map_err(|error| StoreError::Allocation { chars, error })?;
    bytes.resize(chars, b'a');
    // All bytes are ASCII, so this cannot fail; the check costs a fraction of the fill.
    let work = String::from_utf8(bytes).expect("a run of ASCII 'a' is valid UTF-8");
    Ok(std::hint::black_box(work))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn defaults_are_the_faithful_workload() {
        let w = Workload::default();
        assert_eq!(w.alloc_chars, 150_000_000);
        assert_eq!(w.delay, Duration::from_millis(500));
        assert!(!w.release_early);
    }

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn work_released_in_steps_goes_back_to_the_system() {
        // 64 MiB + a partial step: the loop's last slice is smaller than a step.
        let chars = (64 << 20) + 12345;
        let work = simulate_expensive_work(chars).unwrap();
        let filled = resident_kib();
        release_in_steps(work);
        let released = resident_kib();
        // Other tests in this process use kilobyte workloads; 48 MiB is far above noise.
        assert!(
            filled.saturating_sub(released) > 48 << 10,
            "RSS {filled} KiB filled, {released} KiB released"
        );
        // Sizes below one step and zero are simply dropped.
        release_in_steps(simulate_expensive_work(RELEASE_STEP - 1).unwrap());
        release_in_steps(String::new());
    }

    #[test]
    fn the_fill_gate_lets_at_most_its_limit_in_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = Arc::new(FillGate::new(2));
        let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, inside, most) = (gate.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        let _turn = gate.enter();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(2));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(
            *gate.filling.lock().unwrap(),
            0,
            "every turn was given back"
        );
    }

    #[test]
    fn work_is_really_filled() {
        let work = simulate_expensive_work(4096).unwrap();
        assert_eq!(work.len(), 4096);
        assert!(work.bytes().all(|b| b == b'a'));
    }
}
