//! One record per request, failures included, streamed to `requests.csv` as requests
//! finish (nothing is held per request, so memory stays flat on long runs).

use std::io::{self, Write};
use std::time::Duration;

use inventory::ReplenishmentError;

/// How one request ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A 2xx answer (the API answers 201 Created): the client believes the order exists.
    Acknowledged,
    /// Any other status.
    FailedStatus(u16),
    /// No complete answer within the client timeout.
    TimedOut,
    /// The connection could not be made (refused: server down or restarting).
    ConnectError,
    /// Reset or closed mid-exchange, or another transport failure.
    TransportError,
}

impl Outcome {
    /// Over AMQP the same classes: the broker unreachable is a connect error, the broker
    /// not answering in time (while connecting, declaring, publishing, or with the
    /// confirm) is a timeout, everything else (nacked, returned, channel closed, lost
    /// connection, queue mismatch) a transport error — a publish has no status.
    pub fn from_result(result: &Result<(), ReplenishmentError>) -> Self {
        match result {
            Ok(()) => Outcome::Acknowledged,
            Err(ReplenishmentError::Rejected { status, .. }) => Outcome::FailedStatus(*status),
            Err(
                ReplenishmentError::TimedOut { .. }
                | ReplenishmentError::AmqpTimedOut { .. }
                | ReplenishmentError::ConfirmTimedOut { .. },
            ) => Outcome::TimedOut,
            Err(e) if e.is_connect() => Outcome::ConnectError,
            Err(_) => Outcome::TransportError,
        }
    }

    pub fn is_acknowledged(self) -> bool {
        self == Outcome::Acknowledged
    }

    /// Stable label used in the CSV.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Acknowledged => "acknowledged",
            Outcome::FailedStatus(_) => "failed_status",
            Outcome::TimedOut => "timed_out",
            Outcome::ConnectError => "connect_error",
            Outcome::TransportError => "transport_error",
        }
    }

    pub fn status(self) -> Option<u16> {
        match self {
            Outcome::FailedStatus(s) => Some(s),
            _ => None,
        }
    }
}

/// Everything known about one request. Times are offsets from the start of the load.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// Order in which requests were issued, from 0.
    pub seq: u64,
    pub item_code: uuid::Uuid,
    pub request_id: String,
    /// The virtual user that sent it (closed model).
    pub user: Option<u64>,
    /// When it should have been sent: the arrival time (open model), or when its virtual
    /// user became ready (closed model: previous end + think time).
    pub scheduled: Duration,
    /// When it was actually handed to the client.
    pub started: Duration,
    pub ended: Duration,
    /// What the report calls "test time": from `scheduled` in the open model (so queueing
    /// behind a stalled server is counted), from `started` in the closed model.
    pub latency: Duration,
    pub outcome: Outcome,
    /// The client's one-line error, for failures.
    pub error: Option<String>,
    /// HTTP requests made for this logical request (1 without retries).
    pub attempts: u32,
    /// How long the final attempt took (the server's response time to it, without the
    /// client's backoff between attempts).
    pub last_attempt: Duration,
    /// The retry budget refused a retry this request wanted.
    pub budget_denied: bool,
    /// The acknowledgement was the server's replay of an earlier attempt's outcome.
    pub replayed: bool,
}

impl RequestRecord {
    /// Scheduler lag: how late the generator sent this request.
    pub fn lag(&self) -> Duration {
        self.started.saturating_sub(self.scheduled)
    }
}

pub const CSV_HEADER: &str = "seq,item_code,request_id,user,scheduled_s,started_s,ended_s,latency_ms,outcome,status,attempts,last_attempt_ms,error";

/// Writes one CSV row per request, header first.
pub struct CsvWriter<W: Write> {
    out: W,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        writeln!(out, "{CSV_HEADER}")?;
        Ok(Self { out })
    }

    pub fn write(&mut self, r: &RequestRecord) -> io::Result<()> {
        writeln!(
            self.out,
            "{},{},{},{},{:.6},{:.6},{:.6},{:.3},{},{},{},{:.3},{}",
            r.seq,
            r.item_code,
            csv_field(&r.request_id),
            r.user.map(|u| u.to_string()).unwrap_or_default(),
            r.scheduled.as_secs_f64(),
            r.started.as_secs_f64(),
            r.ended.as_secs_f64(),
            r.latency.as_secs_f64() * 1000.0,
            r.outcome.label(),
            r.outcome
                .status()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            r.attempts,
            r.last_attempt.as_secs_f64() * 1000.0,
            csv_field(r.error.as_deref().unwrap_or("")),
        )
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// RFC 4180 quoting: fields with a comma, quote or line break are quoted, quotes doubled.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: Outcome, error: Option<&str>) -> RequestRecord {
        RequestRecord {
            seq: 7,
            item_code: uuid::Uuid::nil(),
            request_id: "rid".into(),
            user: Some(3),
            scheduled: Duration::from_millis(1000),
            started: Duration::from_millis(1002),
            ended: Duration::from_millis(1502),
            latency: Duration::from_millis(500),
            outcome,
            error: error.map(str::to_owned),
            attempts: 1,
            last_attempt: Duration::from_millis(500),
            budget_denied: false,
            replayed: false,
        }
    }

    #[test]
    fn rows_follow_the_header_and_quote_what_needs_quoting() {
        let mut w = CsvWriter::new(Vec::new()).unwrap();
        w.write(&record(Outcome::Acknowledged, None)).unwrap();
        w.write(&record(
            Outcome::FailedStatus(503),
            Some("rejected: 503, \"busy\""),
        ))
        .unwrap();
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(
            lines[1],
            "7,00000000-0000-0000-0000-000000000000,rid,3,1.000000,1.002000,1.502000,500.000,acknowledged,,1,500.000,"
        );
        assert!(
            lines[2].ends_with(",failed_status,503,1,500.000,\"rejected: 503, \"\"busy\"\"\""),
            "{}",
            lines[2]
        );
        assert_eq!(lines[1].split(',').count(), CSV_HEADER.split(',').count());
    }

    #[test]
    fn lag_is_actual_minus_intended_send() {
        assert_eq!(
            record(Outcome::TimedOut, None).lag(),
            Duration::from_millis(2)
        );
    }
}
