//! The threads that do the orders' work: a pool of plain OS threads, started on demand up
//! to `--max-blocking-threads`, each blocked for a whole order as the original's IIS
//! worker threads were.
//!
//! Why not tokio's own blocking pool: the pool's threads must keep the CPU priority of the
//! thread that created the pool. With `--prioritize-work` the async side (accepting,
//! answering 503s, `/health`) lowers its own priority ([`crate::priority`]) so that under a
//! refusal flood the admitted orders get the CPU first. On Linux a new thread inherits its
//! creator's nice value, and tokio starts blocking threads from whichever async worker
//! called `spawn_blocking`; an unprivileged thread cannot raise its priority back. So the
//! order threads here are started by a spawner thread of their own, created before the
//! async side lowers its priority: every order thread starts at the priority the process
//! started with.
//!
//! Otherwise it behaves like tokio's pool: a job goes to an idle thread if there is one,
//! else to a new thread while fewer than `max_threads` exist, else it waits in a queue;
//! a thread idle for [`KEEP_ALIVE`] exits.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long an idle order thread waits for another job before it exits (tokio's own
/// default for its blocking pool).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool; cheap to clone (one shared pool).
#[derive(Clone)]
pub struct WorkPool {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when a job is queued.
    job_queued: Condvar,
    /// Signalled when the last running job ends with none queued.
    all_done: Condvar,
    /// Asks the spawner thread for one more order thread.
    spawn: Mutex<mpsc::Sender<()>>,
    max_threads: usize,
    name: String,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// Jobs being run now.
    running: usize,
}

/// The job's thread ended without an answer: it panicked.
#[derive(Debug, thiserror::Error)]
#[error("the order's work thread failed before it finished")]
pub struct WorkLost;

impl std::fmt::Debug for WorkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("WorkPool")
            .field("threads", &state.threads)
            .field("idle", &state.idle)
            .field("queued", &state.queue.len())
            .field("max_threads", &self.inner.max_threads)
            .finish()
    }
}

impl WorkPool {
    /// Creates the pool and its spawner thread; no order thread is started yet. Every
    /// order thread will run at the CPU priority of the thread calling this.
    ///
    /// # Panics
    /// If the OS cannot start the spawner thread at all (out of threads at start-up).
    pub fn new(max_threads: usize, name: &str) -> Self {
        let (spawn, requests) = mpsc::channel::<()>();
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            job_queued: Condvar::new(),
            all_done: Condvar::new(),
            spawn: Mutex::new(spawn),
            max_threads: max_threads.max(1),
            name: name.to_string(),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name(format!("{name}-spawner"))
            .spawn(move || {
                // Ends when the pool is dropped (the sender with it).
                while requests.recv().is_ok() {
                    let Some(inner) = weak.upgrade() else { break };
                    let thread_inner = Arc::clone(&inner);
                    let started = std::thread::Builder::new()
                        .name(inner.name.clone())
                        .spawn(move || thread_inner.serve());
                    if let Err(error) = started {
                        // The job stays queued for a running thread (or the next spawn).
                        inner.lock().threads -= 1;
                        tracing::error!(%error, "cannot start an order thread");
                    }
                }
            })
            .expect("cannot start the order pool's spawner thread");
        Self { inner }
    }

    /// Runs `job` on an order thread and waits for its result without blocking the async
    /// worker. If the caller stops waiting, the job still runs to its end (as a
    /// `spawn_blocking` job would).
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkLost> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move || {
            let _ = tx.send(job());
        }));
        rx.await.map_err(|_| WorkLost)
    }

    /// Blocks until no job is queued or running: at shutdown, so every order that started
    /// reaches the file before the process exits. Call it once nothing submits any more.
    pub fn wait_idle(&self) {
        let state = self.inner.lock();
        let _done = self
            .inner
            .all_done
            .wait_while(state, |s| s.running > 0 || !s.queue.is_empty())
            .unwrap_or_else(|p| p.into_inner());
    }

    fn submit(&self, job: Job) {
        let mut state = self.inner.lock();
        state.queue.push_back(job);
        if state.idle > 0 {
            drop(state);
            self.inner.job_queued.notify_one();
        } else if state.threads < self.inner.max_threads {
            state.threads += 1;
            drop(state);
            let asked = self
                .inner
                .spawn
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(());
            if asked.is_err() {
                self.inner.lock().threads -= 1;
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is counters and a queue, each updated in one step: valid after any
        // panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An order thread's life: take jobs until idle for [`KEEP_ALIVE`].
    fn serve(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                state.running += 1;
                drop(state);
                // A panicking order must not take the thread's count with it; its caller
                // sees `WorkLost` (the result sender was dropped).
                let _ = catch_unwind(AssertUnwindSafe(job));
                state = self.lock();
                state.running -= 1;
                if state.running == 0 && state.queue.is_empty() {
                    self.all_done.notify_all();
                }
                continue;
            }
            state.idle += 1;
            let (next, timeout) = self
                .job_queued
                .wait_timeout_while(state, KEEP_ALIVE, |s| s.queue.is_empty())
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn jobs_run_on_at_most_max_threads_and_return_their_results() {
        let pool = WorkPool::new(3, "test-order");
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..9)
            .map(|i| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        running.fetch_sub(1, Ordering::SeqCst);
                        (i, std::thread::current().name().map(str::to_owned))
                    })
                    .await
                })
            })
            .collect();
        let started = Instant::now();
        for (i, job) in jobs.into_iter().enumerate() {
            let (n, name) = job.await.unwrap().unwrap();
            assert_eq!(n, i);
            assert_eq!(name.as_deref(), Some("test-order"));
        }
        assert_eq!(most.load(Ordering::SeqCst), 3, "never more than 3 at once");
        // 9 jobs of 30 ms on 3 threads: 3 rounds.
        assert!(started.elapsed() >= Duration::from_millis(85));
    }

    #[test]
    fn wait_idle_returns_once_every_job_has_ended() {
        let pool = WorkPool::new(2, "test-order");
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..4 {
            let done = done.clone();
            pool.submit(Box::new(move || {
                std::thread::sleep(Duration::from_millis(20));
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        pool.wait_idle();
        assert_eq!(done.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_pool_keeps_working() {
        let pool = WorkPool::new(1, "test-order");
        let lost = pool.run(|| panic!("boom")).await;
        assert!(lost.is_err());
        assert_eq!(pool.run(|| 42).await.unwrap(), 42);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn order_threads_keep_the_creators_priority_not_the_callers() {
        // The pool is created at the test's priority; the caller then lowers its own, as
        // the async worker does: the order thread must not inherit it.
        let pool = WorkPool::new(1, "test-order");
        let creator = crate::priority::current_nice();
        let nice = std::thread::spawn(move || {
            crate::priority::lower_current_thread();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(pool.run(crate::priority::current_nice))
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(nice, creator);
    }
}
