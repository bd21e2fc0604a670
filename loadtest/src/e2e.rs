//! End-to-end latency of the messaging half, observed from outside: when did each
//! published order's line appear in the orders file?
//!
//! A publish that is "acknowledged" (returned, or confirmed by the broker) says nothing
//! about when the order is written: the worker gets to it later, at its own pace. So the
//! lab tails the orders file while the run goes on — [`OrdersTail`] reads the bytes
//! appended since the last poll every [`POLL_EVERY`], cuts them at the last complete line
//! and parses them with the persistence crate's parser (the one definition of the line
//! format), and notes the first time each item code was seen. [`end_to_end`] then matches
//! the item codes to their publish start times.
//!
//! Why these choices:
//!
//! - **Polling, not inotify**: a stat and a read of the new bytes every 25 ms cost nothing
//!   next to the orders being written, work on any file system, and bound the error of
//!   each sighting to the poll interval (25 ms, small next to the seconds a queue can
//!   hold an order; the report says end-to-end figures are ±[`POLL_EVERY`]).
//! - **From the publish's start**: what the inventory side waited for, from the moment it
//!   decided to order until the order exists — the publish latency included, as the HTTP
//!   figure includes the whole request.
//! - **Only complete lines** are parsed: a line being appended is read on the next poll.
//! - **A file that shrinks** (rotated, truncated) is read again from its start; the
//!   reconciliation reports the shrink, the tail keeps what it saw.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use purchasing_persistence::OrdersFile;
use tokio::time::Instant;
use uuid::Uuid;

use crate::report::Percentiles;

/// How often the orders file is read for new lines (the resolution of the end-to-end
/// latency).
pub const POLL_EVERY: Duration = Duration::from_millis(25);

/// What the tail has seen so far.
#[derive(Debug, Default, Clone)]
pub struct Sightings {
    /// Each item code's first sighting, since the load's start.
    pub first_seen: HashMap<Uuid, Duration>,
    /// Well-formed order lines seen (duplicates and strangers included).
    pub lines: u64,
    /// When the last new line was seen, since the load's start.
    pub last_line_at: Option<Duration>,
}

/// A poller reading the orders file's new lines until stopped.
pub struct OrdersTail {
    seen: Arc<Mutex<Sightings>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl OrdersTail {
    /// Starts tailing `path` from byte `from` (the mark taken before the load), with times
    /// relative to `epoch`.
    pub fn start(path: PathBuf, from: u64, epoch: Instant) -> OrdersTail {
        let seen = Arc::new(Mutex::new(Sightings::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(poll(path, from, epoch, seen.clone(), stop.clone()));
        OrdersTail { seen, stop, task }
    }

    /// Lines seen so far (cheap: for the samplers).
    pub fn lines(&self) -> u64 {
        self.lock().lines
    }

    /// A copy of what was seen so far.
    pub fn snapshot(&self) -> Sightings {
        self.lock().clone()
    }

    /// Reads once more (so a line written just before is not missed), stops, and returns
    /// everything seen.
    pub async fn finish(mut self) -> Sightings {
        tokio::time::sleep(POLL_EVERY * 2).await;
        self.stop.store(true, Ordering::Relaxed);
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sightings> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for OrdersTail {
    /// A run abandoned on the way (an error, Ctrl-C) stops its poller too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn poll(
    path: PathBuf,
    mut offset: u64,
    epoch: Instant,
    seen: Arc<Mutex<Sightings>>,
    stop: Arc<AtomicBool>,
) {
    loop {
        let last = stop.load(Ordering::Relaxed);
        if let Some(bytes) = read_new(&path, &mut offset) {
            let now = epoch.elapsed();
            let orders = OrdersFile::parse(&bytes);
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            for order in &orders.orders {
                seen.lines += 1;
                if let Ok(code) = Uuid::parse_str(order.as_str()) {
                    seen.first_seen.entry(code).or_insert(now);
                }
            }
            if !orders.orders.is_empty() {
                seen.last_line_at = Some(now);
            }
        }
        if last {
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The complete lines appended after `offset`, advancing it past them. `None` when
/// there is nothing new (or the file cannot be read yet: the worker creates it).
fn read_new(path: &std::path::Path, offset: &mut u64) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len < *offset {
        *offset = 0; // truncated or replaced: start again
    }
    if len == *offset {
        return None;
    }
    file.seek(SeekFrom::Start(*offset)).ok()?;
    let mut bytes = Vec::with_capacity((len - *offset) as usize);
    file.take(len - *offset).read_to_end(&mut bytes).ok()?;
    let end = bytes.iter().rposition(|&b| b == b'\n')? + 1;
    bytes.truncate(end);
    *offset += end as u64;
    Some(bytes)
}

/// End-to-end latencies: for every acknowledged publish (`published`: item code → its
/// start since the load began) whose line was seen, sighting − publish start (never
/// negative). Codes not seen (lost, still queued) and lines of codes not published
/// acknowledged (ghosts, strangers) are left out.
pub fn end_to_end(
    published: &HashMap<Uuid, Duration>,
    seen: &HashMap<Uuid, Duration>,
) -> Vec<Duration> {
    published
        .iter()
        .filter_map(|(code, sent)| seen.get(code).map(|at| at.saturating_sub(*sent)))
        .collect()
}

/// p50/p99/max in milliseconds (nearest rank) of `values`.
pub fn percentiles(values: &[Duration]) -> Percentiles {
    percentiles_ms(values.iter().map(|d| d.as_secs_f64() * 1000.0).collect())
}

/// [`percentiles`] of values already in milliseconds (nearest rank).
pub fn percentiles_ms(mut ms: Vec<f64>) -> Percentiles {
    ms.sort_by(f64::total_cmp);
    let rank = |q: f64| -> Option<f64> {
        if ms.is_empty() {
            return None;
        }
        let i = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
        Some(ms[i])
    };
    Percentiles {
        count: ms.len() as u64,
        p50: rank(0.50),
        p99: rank(0.99),
        max: ms.last().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn publishes_are_matched_to_their_first_sighting() {
        let codes: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let published: HashMap<Uuid, Duration> = [
            (codes[0], ms(100)),
            (codes[1], ms(200)), // never seen: lost or still queued
            (codes[2], ms(300)),
        ]
        .into_iter()
        .collect();
        let seen: HashMap<Uuid, Duration> = [
            (codes[0], ms(150)),
            (codes[2], ms(290)), // seen "before" its start (poll rounding): 0, not negative
            (codes[3], ms(1000)), // a ghost or a stranger: not a publish of ours
        ]
        .into_iter()
        .collect();
        let mut e2e = end_to_end(&published, &seen);
        e2e.sort();
        assert_eq!(e2e, vec![ms(0), ms(50)]);
        let p = percentiles(&e2e);
        assert_eq!((p.count, p.p50, p.p99), (2, Some(0.0), Some(50.0)));
        assert_eq!(percentiles(&[]).p50, None);
    }

    #[test]
    fn only_complete_lines_are_read_and_offsets_advance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.txt");
        let mut offset = 0;
        assert!(read_new(&path, &mut offset).is_none(), "missing file");
        std::fs::write(
            &path,
            "Purchase order for item: a\nPurchase order for item: b",
        )
        .unwrap();
        let first = read_new(&path, &mut offset).unwrap();
        assert_eq!(OrdersFile::parse(&first).orders.len(), 1);
        assert!(read_new(&path, &mut offset).is_none(), "half a line waits");
        std::fs::write(
            &path,
            "Purchase order for item: a\nPurchase order for item: b\n",
        )
        .unwrap();
        let second = read_new(&path, &mut offset).unwrap();
        assert_eq!(OrdersFile::parse(&second).orders[0].as_str(), "b");
        std::fs::write(&path, "Purchase order for item: c\n").unwrap();
        let third = read_new(&path, &mut offset).unwrap();
        assert_eq!(
            OrdersFile::parse(&third).orders[0].as_str(),
            "c",
            "shrunk: from 0"
        );
    }

    #[tokio::test]
    async fn the_tail_sees_lines_as_they_are_appended() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.txt");
        std::fs::write(&path, "Purchase order for item: old\n").unwrap();
        let mark = std::fs::metadata(&path).unwrap().len();
        let code = Uuid::new_v4();
        let tail = OrdersTail::start(path.clone(), mark, Instant::now());
        tokio::time::sleep(ms(60)).await;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(f, "Purchase order for item: {code}").unwrap();
        let seen = tail.finish().await;
        assert_eq!(seen.lines, 1, "the old line is before the mark");
        assert!(seen.first_seen[&code] >= ms(50));
    }
}
