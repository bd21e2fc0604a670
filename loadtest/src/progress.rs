//! Live progress while the load runs: a status line redrawn in place on a terminal,
//! plain periodic lines otherwise (CI logs, pipes), both on stderr.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::runner::Live;

/// How often a plain (non-terminal) progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// A callback for the number of server crashes so far (when the lab runs the server).
pub type CrashCount = Box<dyn Fn() -> u64 + Send + Sync>;

/// Prints progress until `live.finished` is set. Returns when the run is over.
pub async fn report_progress(epoch: Instant, live: Arc<Live>, crashes: Option<CrashCount>) {
    let tty = std::io::stderr().is_terminal();
    let mut last_completed = 0u64;
    let mut last_plain = epoch;
    let mut tick = tokio::time::interval_at(epoch + Duration::from_secs(1), Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let completed = live.completed();
        let rate = completed.saturating_sub(last_completed);
        last_completed = completed;
        let line = status_line(epoch.elapsed(), &live, rate, crashes.as_ref().map(|c| c()));
        let finished = live.finished.load(Ordering::Relaxed);
        let mut err = std::io::stderr().lock();
        if tty {
            // \r + erase line: redraw in place; a newline when done keeps the last one.
            let _ = write!(err, "\r\x1b[2K{line}");
            if finished {
                let _ = writeln!(err);
            }
        } else if finished || last_plain.elapsed() >= PLAIN_EVERY {
            last_plain = Instant::now();
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
        if finished {
            return;
        }
    }
}

pub fn status_line(
    elapsed: Duration,
    live: &Live,
    rate_per_s: u64,
    crashes: Option<u64>,
) -> String {
    let mut line = format!(
        "{:>6.1}s  users {:>4}  sent {:>6}  ok {:>6}  failed {:>6}  in flight {:>5}  {:>5}/s",
        elapsed.as_secs_f64(),
        live.users.load(Ordering::Relaxed),
        live.sent.load(Ordering::Relaxed),
        live.acknowledged.load(Ordering::Relaxed),
        live.failed.load(Ordering::Relaxed),
        live.in_flight.load(Ordering::Relaxed),
        rate_per_s,
    );
    if let Some(n) = crashes {
        line.push_str(&format!("  server crashes {n}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_shows_every_counter() {
        let live = Live::default();
        live.users.store(40, Ordering::Relaxed);
        live.sent.store(120, Ordering::Relaxed);
        live.acknowledged.store(100, Ordering::Relaxed);
        live.failed.store(5, Ordering::Relaxed);
        live.in_flight.store(15, Ordering::Relaxed);
        let line = status_line(Duration::from_millis(12_300), &live, 21, Some(2));
        for part in [
            "12.3s",
            "users   40",
            "sent    120",
            "ok    100",
            "failed      5",
            "in flight    15",
            "21/s",
            "server crashes 2",
        ] {
            assert!(line.contains(part), "{part:?} missing from {line:?}");
        }
    }
}
