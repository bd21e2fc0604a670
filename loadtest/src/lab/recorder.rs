//! The recorder: a thread of its own that writes every request record to `requests.csv`
//! and folds it into the run's aggregates, so the senders never wait on a disk write.
//! Nothing is kept per request while the load runs, so the lab's memory stays flat however
//! long it runs; what the checker needs of each request (its code, whether it was
//! acknowledged, when it started) is read back from the CSV when the load is over.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::profile::StepProfile;
use crate::reconcile::SentCodes;
use crate::record::{CsvWriter, RequestRecord, read_sent};
use crate::stats::Aggregator;

/// Records buffered between the senders and the recorder thread: enough to ride out a
/// slow disk write at tens of thousands of requests per second.
const RECORD_BUFFER: usize = 8192;

/// How often the recorder takes what the senders queued: at 50k requests/s a tick brings
/// 250 records, a thirtieth of the buffer.
const RECORDER_TICK: Duration = Duration::from_millis(5);

/// Item code → the start of its acknowledged publish (messaging runs), for the
/// end-to-end matcher.
pub(super) type PublishTimes = std::collections::HashMap<uuid::Uuid, Duration>;

/// What the run sent, read back from the CSV after the load.
pub(super) struct Sent {
    pub codes: SentCodes,
    /// Messaging runs; empty otherwise.
    pub published: PublishTimes,
}

pub(super) struct Recorder {
    thread: JoinHandle<std::io::Result<Aggregator>>,
    csv_path: PathBuf,
    keep_publish_times: bool,
}

impl Recorder {
    /// Creates `out_dir/requests.csv` and starts the thread; the senders send into the
    /// returned channel. `keep_publish_times`: remember when each acknowledged publish
    /// started (messaging runs).
    pub fn start(
        out_dir: &Path,
        step_profile: Option<StepProfile>,
        keep_publish_times: bool,
    ) -> anyhow::Result<(Recorder, mpsc::Sender<RequestRecord>)> {
        let csv_path = out_dir.join("requests.csv");
        let file = File::create(&csv_path)
            .with_context(|| format!("cannot create {}", csv_path.display()))?;
        let csv = CsvWriter::new(BufWriter::new(file))
            .with_context(|| format!("cannot write {}", csv_path.display()))?;
        let (records_tx, records_rx) = mpsc::channel(RECORD_BUFFER);
        let aggregator = Aggregator::new(step_profile);
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || record_all(records_rx, csv, aggregator))
            .context("cannot start the recorder thread")?;
        let recorder = Recorder {
            thread,
            csv_path,
            keep_publish_times,
        };
        Ok((recorder, records_tx))
    }

    /// Waits until every sender is gone and the CSV is flushed, then reads it back.
    pub fn finish(self) -> anyhow::Result<(Aggregator, Sent)> {
        let csv_path = &self.csv_path;
        let aggregator = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the recorder thread panicked"))?
            .with_context(|| format!("cannot write {}", csv_path.display()))?;
        let mut sent = Sent {
            codes: SentCodes::default(),
            published: PublishTimes::new(),
        };
        let file =
            File::open(csv_path).with_context(|| format!("cannot read {}", csv_path.display()))?;
        read_sent(std::io::BufReader::with_capacity(1 << 20, file), |row| {
            sent.codes.insert(row.item_code, row.acknowledged);
            if self.keep_publish_times && row.acknowledged {
                sent.published.insert(row.item_code, row.started);
            }
        })
        .with_context(|| format!("cannot read {} back", csv_path.display()))?;
        Ok((aggregator, sent))
    }
}

fn record_all(
    mut records: mpsc::Receiver<RequestRecord>,
    mut csv: CsvWriter<BufWriter<File>>,
    mut aggregator: Aggregator,
) -> std::io::Result<Aggregator> {
    let mut batch = Vec::with_capacity(RECORD_BUFFER);
    loop {
        // Whatever has arrived, without waiting: a receiver parked in `recv` is woken by
        // every send — a futex call and a context switch per request, measured at about
        // 5 % of the generator's CPU at 12k requests/s. Polling on a tick costs nothing
        // per request; the buffer holds far more than a tick's worth.
        while batch.len() < RECORD_BUFFER {
            match records.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        for record in batch.drain(..) {
            csv.write(&record)?;
            aggregator.add(&record);
        }
        if records.is_closed() && records.is_empty() {
            break;
        }
        std::thread::sleep(RECORDER_TICK);
    }
    csv.finish()?;
    Ok(aggregator)
}
