//! The order path: the deadline and the key checked first, the work done, then the append
//! (see `append`), the key settled by the outcome.

use std::time::Instant;

use super::append::AppendError;
use super::{PurchaseOrderStore, SubmitOptions, Submitted, deadline_passed};
use crate::error::StoreError;
use crate::idempotency::{Begin, IdempotencyKey, KeyIndex};
use crate::workload::{FillGate, FillTiming, release_in_steps, simulate_expensive_work};
use item_code::ItemCode;

impl PurchaseOrderStore {
    /// Records one purchase order like [`PurchaseOrderStore::submit_purchase_order`],
    /// honouring a deadline and an idempotency key.
    ///
    /// In order: a deadline already past returns [`StoreError::DeadlineExceeded`] before
    /// anything is allocated; a key is looked up ([`Submitted::Replayed`] at once for a
    /// completed key with the same code, [`StoreError::KeyReused`] for another code,
    /// [`StoreError::KeyInProgress`] while its first submit runs); the work is done; under
    /// the append lock the deadline is checked again, the journal is caught up with other
    /// stores sharing the file (a key they completed meanwhile is replayed or refused as
    /// above, writing nothing), and the order line is appended (after its journal record
    /// when keyed) and, if durable, synced. Any failure before the line is written
    /// releases the key so a retry can do the work.
    ///
    /// Blocks the calling thread for at least the workload's delay, except when it
    /// returns early as above.
    pub fn submit(
        &self,
        code: &ItemCode,
        options: SubmitOptions<'_>,
    ) -> Result<Submitted, StoreError> {
        self.submit_observed(code, options, |_| {})
    }

    /// [`PurchaseOrderStore::submit`], telling `on_fill` how the order's fill went as soon
    /// as it ends (before the sleep): how long it waited for its turn at the fill gate and
    /// how long the fill took. The wait is the node's queue for the CPU, what an adaptive
    /// admission limit steers by. Not called when the submit returns before the fill.
    pub fn submit_observed(
        &self,
        code: &ItemCode,
        options: SubmitOptions<'_>,
        on_fill: impl FnOnce(FillTiming),
    ) -> Result<Submitted, StoreError> {
        if deadline_passed(options.deadline) {
            return Err(StoreError::DeadlineExceeded {
                stage: StoreError::DEADLINE_BEFORE_WORK,
            });
        }
        // A key given to a store without idempotency is ignored: with no journal it could
        // promise nothing, and refusing it would make the header an error on a faithful
        // server.
        let claim = match (options.key, &self.idempotency) {
            (Some(key), Some(idempotency)) => match idempotency.index.begin(key, code)? {
                Begin::Replay => return Ok(Submitted::Replayed),
                Begin::DoTheWork => Some(Claim::new(&idempotency.index, key)),
            },
            _ => None,
        };

        // From here on, an early return drops `claim`, which releases the key.
        // Failures that stick until a restart are answered before the work, not after it:
        // the work could only be thrown away.
        if let Some(cause) = self.orders_file_broken.get() {
            return Err(self.broken_error(cause));
        }
        if let (Some(_), Some(idempotency)) = (&claim, &self.idempotency)
            && let Some(failed) = idempotency.journal.failed()
        {
            return Err(failed);
        }
        let work = {
            let arrived = Instant::now();
            let _turn = self.fill_gate.as_ref().map(FillGate::enter);
            let began = Instant::now();
            let work = simulate_expensive_work(self.workload.alloc_chars)?;
            on_fill(FillTiming {
                waited: began - arrived,
                filled: began.elapsed(),
            });
            work
        };
        let work = if self.workload.release_early {
            release_in_steps(work);
            None
        } else {
            Some(work)
        };

        std::thread::sleep(self.workload.delay);
        let submitted =
            match self.append_order(code, options.deadline, claim.as_ref().map(|c| c.key)) {
                Ok(submitted) => {
                    if let Some(claim) = claim {
                        claim.complete();
                    }
                    submitted
                }
                Err(AppendError {
                    error,
                    line_written,
                }) => {
                    if line_written && let Some(claim) = claim {
                        claim.leave_in_doubt();
                    }
                    return Err(error);
                }
            };

        // Keep the string observably alive until the order is written, so neither the
        // optimiser nor an early drop shortens the time the memory is held.
        std::hint::black_box(&work);
        if let Some(work) = work {
            release_in_steps(work);
        }
        Ok(submitted)
    }

    /// Records one purchase order: allocate and fill `alloc_chars` characters, block for
    /// `delay`, then append `Purchase order for item: CODE\n` to the file — the faithful
    /// method ([`PurchaseOrderStore::submit`] with no deadline and no key; synced when the
    /// store is durable).
    ///
    /// Blocks the calling thread for at least `delay`; call it from a thread that may
    /// block (for example tokio's `spawn_blocking`), never from an async task.
    pub fn submit_purchase_order(&self, code: &ItemCode) -> Result<(), StoreError> {
        self.submit(code, SubmitOptions::default()).map(|_| ())
    }
}

/// A key marked in progress by this submit. Dropped unsettled (an early return, a
/// panic), it releases the key so a retry can do the work.
struct Claim<'a> {
    index: &'a KeyIndex,
    key: &'a IdempotencyKey,
    settled: bool,
}

impl<'a> Claim<'a> {
    fn new(index: &'a KeyIndex, key: &'a IdempotencyKey) -> Self {
        Self {
            index,
            key,
            settled: false,
        }
    }

    /// The order is written (and synced, if durable) or was found written by another
    /// store: later submits replay.
    fn complete(mut self) {
        self.index.complete(self.key);
        self.settled = true;
    }

    /// The line was written but not confirmed on disk: keep the key in progress so this
    /// process neither writes it twice nor replays an order that may be lost. The next
    /// open decides from what the orders file really holds.
    fn leave_in_doubt(mut self) {
        self.index.leave_in_doubt(self.key);
        self.settled = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.index.release(self.key);
        }
    }
}
