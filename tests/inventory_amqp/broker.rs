//! The broker the tests that can take turns share, started on first use and stopped when
//! the test process exits; and the runtime every test's AMQP conversation runs on.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use loadtest::broker::{Broker, BrokerOptions};

use crate::raw::delete_queues;

/// Longest any test's AMQP conversation may take, so a hang fails instead of blocking.
pub(crate) const TEST_LIMIT: Duration = Duration::from_secs(120);

/// Runs `future` on a fresh single-threaded runtime (as the `inventory` command does),
/// failing after [`TEST_LIMIT`].
pub(crate) fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(async {
            tokio::time::timeout(TEST_LIMIT, future)
                .await
                .expect("the test's AMQP exchanges finished in time")
        })
}

/// The broker of the tests that can take turns; `None` until the first of them runs.
static SHARED: Mutex<Option<Broker>> = Mutex::new(None);
/// Held by the test using [`SHARED`], so tests never see each other's messages.
static TURN: Mutex<()> = Mutex::new(());
static STOP_AT_EXIT: Once = Once::new();

/// A test's turn on the shared broker: its URL and log, the queues deleted.
pub(crate) struct Shared {
    pub(crate) url: String,
    pub(crate) log: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

impl Shared {
    /// Waits for the turn, starts the broker if it is the first, deletes both queues.
    pub(crate) fn lock() -> Shared {
        let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        let (url, log) = {
            let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
            let broker = shared.get_or_insert_with(|| {
                let broker = Broker::start(BrokerOptions::default())
                    .unwrap_or_else(|e| panic!("the shared broker did not start: {e}"));
                // Statics are never dropped: stop it (and remove its directory) when the
                // test process exits, after every test has run.
                STOP_AT_EXIT.call_once(|| {
                    // SAFETY: registers a plain `extern "C"` function; no other effect.
                    unsafe { libc::atexit(stop_shared_broker) };
                });
                broker
            });
            (broker.amqp_url(), broker.log_file())
        };
        run(delete_queues(&url));
        Shared {
            url,
            log,
            _turn: turn,
        }
    }
}

extern "C" fn stop_shared_broker() {
    // A panic must not cross the C boundary; there is nothing left to report it to.
    let _ = std::panic::catch_unwind(|| {
        let broker = SHARED.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(broker) = broker {
            let _ = broker.stop();
        }
    });
}
