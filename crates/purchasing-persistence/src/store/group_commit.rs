//! Durable acknowledgements by group commit: one fsync covers every line appended while
//! the previous fsync ran.
//!
//! An fsync costs the same for one line as for fifty. Syncing each line under the append
//! lock makes the syncs run one after another, so a durable store's throughput is one
//! fsync's latency, whatever the concurrency. Here a writer appends its line under the
//! lock, takes a ticket (the lines are numbered in file order), lets the lock go, and then
//! waits until a flush that started after its line was written has finished. The first
//! waiter finding no flush running becomes its leader and syncs on behalf of everyone whose
//! line is already in the file; those who arrive meanwhile wait for the next flush, which
//! the first of them leads. Databases (PostgreSQL's commit delay, InnoDB's group commit) and
//! RabbitMQ's own message store cover many writes with one flush the same way.
//!
//! The guarantee is unchanged: no submit returns before a flush covering its own line has
//! finished. `fdatasync` flushes the file's dirty pages whichever descriptor wrote them, so
//! the leader's descriptor covers the others' lines.
//!
//! A failed fsync ends it: after one, Linux may have dropped dirty pages and marked them
//! clean, so a later fsync that succeeds proves nothing about lines written before (see
//! `append.rs`). Every waiter then gets the error, and so does every later one; the store
//! marks itself broken, so nothing more is acknowledged until a restart.

use std::fs::File;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};

/// The position of one line in the order of appends, to wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ticket(u64);

#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
    /// Signalled whenever a flush ends, successfully or not.
    flushed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Lines appended so far; the last one's ticket.
    appended: u64,
    /// Every line whose ticket is at most this is on disk.
    synced: u64,
    /// A leader is syncing now (outside the mutex).
    flushing: bool,
    /// The first failed fsync's error: no ticket is covered any more.
    failed: Option<io::Error>,
    /// Flushes run, for the tests (how many lines shared one).
    flushes: u64,
}

impl GroupCommit {
    /// Numbers a line just written. Call it under the append lock, after the line's write
    /// returned, so tickets follow the file's order.
    pub(super) fn appended(&self) -> Ticket {
        let mut state = self.lock();
        state.appended += 1;
        Ticket(state.appended)
    }

    /// Blocks until a flush covering `ticket` has finished, leading one through `file`
    /// (any descriptor of the orders file) when none is running. Call it without holding
    /// the append lock, or the lines that could share the flush cannot be written.
    /// `Err` is the failed fsync's error, for this and every later ticket.
    pub(super) fn wait_durable(&self, ticket: Ticket, file: &File) -> io::Result<()> {
        let mut state = self.lock();
        loop {
            if let Some(failed) = &state.failed {
                return Err(copy_of(failed));
            }
            if state.synced >= ticket.0 {
                return Ok(());
            }
            if state.flushing {
                state = self
                    .flushed
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            // Lead: everything appended so far is already in the file (tickets are taken
            // after the write), so this flush covers it all.
            state.flushing = true;
            let covers = state.appended;
            drop(state);
            let result = file.sync_data();
            state = self.lock();
            state.flushing = false;
            state.flushes += 1;
            match result {
                Ok(()) => state.synced = state.synced.max(covers),
                Err(error) => {
                    state.failed.get_or_insert(error);
                }
            }
            self.flushed.notify_all();
        }
    }

    /// How many flushes ran and how many lines they covered, for the tests.
    #[cfg(test)]
    pub(super) fn flushes_and_lines(&self) -> (u64, u64) {
        let state = self.lock();
        (state.flushes, state.synced)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a few integer stores that cannot panic half-way.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The same error again for another waiter (`io::Error` is not `Clone`).
fn copy_of(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_flush_covers_every_line_appended_before_it_began() {
        let file = tempfile::tempfile().unwrap();
        let group = GroupCommit::default();
        let tickets: Vec<Ticket> = (0..3).map(|_| group.appended()).collect();
        group.wait_durable(tickets[2], &file).unwrap();
        // The first two were written before that flush began: covered, no flush of their own.
        group.wait_durable(tickets[0], &file).unwrap();
        group.wait_durable(tickets[1], &file).unwrap();
        assert_eq!(group.flushes_and_lines(), (1, 3));
        // A line appended after it needs a flush of its own.
        let later = group.appended();
        group.wait_durable(later, &file).unwrap();
        assert_eq!(group.flushes_and_lines(), (2, 4));
    }

    #[test]
    fn a_failed_flush_fails_its_waiters_and_every_later_one() {
        // fdatasync on /dev/null fails (EINVAL: the device has no fsync), as a real
        // disk's failed flush would.
        let null = File::open("/dev/null").unwrap();
        let good = tempfile::tempfile().unwrap();
        let group = GroupCommit::default();
        let first = group.appended();
        let error = group.wait_durable(first, &null).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(22), "EINVAL: {error}");
        // Later lines, even synced through a descriptor that works, are not trusted.
        let later = group.appended();
        let again = group.wait_durable(later, &good).unwrap_err();
        assert_eq!(again.raw_os_error(), error.raw_os_error());
        assert_eq!(group.flushes_and_lines(), (1, 0));
    }

    #[test]
    fn concurrent_waiters_each_return_only_once_covered() {
        let file = std::sync::Arc::new(tempfile::tempfile().unwrap());
        let group = std::sync::Arc::new(GroupCommit::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (file, group) = (file.clone(), group.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let ticket = group.appended();
                        group.wait_durable(ticket, &file).unwrap();
                        // Returned: a finished flush covered this ticket.
                        assert!(group.lock().synced >= ticket.0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (flushes, lines) = group.flushes_and_lines();
        assert_eq!(lines, 1600);
        assert!((1..=1600).contains(&flushes), "{flushes} flushes");
    }
}
