//! One record per request, failures included, streamed to `requests.csv` as requests
//! finish (nothing is held per request, so memory stays flat on long runs), and read
//! back after the load for what the checker needs of each ([`read_sent`]).

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
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.seq,
            r.item_code,
            csv_field(&r.request_id),
            Blank(r.user),
            Fixed::seconds(r.scheduled),
            Fixed::seconds(r.started),
            Fixed::seconds(r.ended),
            Fixed::millis(r.latency),
            r.outcome.label(),
            Blank(r.outcome.status()),
            r.attempts,
            Fixed::millis(r.last_attempt),
            csv_field(r.error.as_deref().unwrap_or("")),
        )
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A duration as seconds with six decimals or milliseconds with three — whole
/// microseconds, written with integer arithmetic: float formatting was a few per cent of
/// the load generator's CPU at tens of thousands of requests per second.
struct Fixed {
    whole: u128,
    fraction: u128,
    digits: usize,
}

impl Fixed {
    fn seconds(d: Duration) -> Self {
        Fixed::of(d, 6)
    }

    fn millis(d: Duration) -> Self {
        Fixed::of(d, 3)
    }

    /// `d` with `digits` decimals, in units of 10^digits microseconds.
    fn of(d: Duration, digits: u32) -> Self {
        let unit = 10u128.pow(digits);
        let us = d.as_micros();
        Fixed {
            whole: us / unit,
            fraction: us % unit,
            digits: digits as usize,
        }
    }
}

impl std::fmt::Display for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:0w$}", self.whole, self.fraction, w = self.digits)
    }
}

/// An optional number, empty when absent.
struct Blank<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for Blank<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => Ok(()),
        }
    }
}

/// RFC 4180 quoting: fields with a comma or quote are quoted, quotes doubled. A line break
/// becomes a space, so every record is one line and the file can be read back line by line.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    let text: std::borrow::Cow<'_, str> = if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ").into()
    } else {
        text.into()
    };
    if text.contains([',', '"']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into()
    } else {
        text
    }
}

/// What the checker needs of one request, read back from `requests.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SentRow {
    pub item_code: uuid::Uuid,
    pub acknowledged: bool,
    /// When it was handed to the client, since the start of the load (µs resolution).
    pub started: Duration,
}

/// Reads a `requests.csv` written by [`CsvWriter`] back, one row at a time, so a run never
/// holds its requests in memory while the load runs: the sent codes are only needed
/// afterwards. A row that does not parse is an error naming its line.
pub fn read_sent(
    reader: impl io::BufRead,
    mut visit: impl FnMut(SentRow),
) -> Result<u64, CsvReadError> {
    let columns = Columns::of_header();
    let mut rows = 0;
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(CsvReadError::Io)?;
        if index == 0 {
            if line != CSV_HEADER {
                return Err(CsvReadError::Header);
            }
            continue;
        }
        visit(
            columns
                .read(&line)
                .ok_or(CsvReadError::Row { line: index + 1 })?,
        );
        rows += 1;
    }
    Ok(rows)
}

/// The columns the checker reads, found by name in [`CSV_HEADER`]: the header is the one
/// definition of the columns' order.
struct Columns {
    item_code: usize,
    started: usize,
    outcome: usize,
    /// The last of the three: no field after it is read.
    last: usize,
}

impl Columns {
    fn of_header() -> Self {
        let at = |name| {
            CSV_HEADER
                .split(',')
                .position(|column| column == name)
                .expect("a column of CSV_HEADER")
        };
        let (item_code, started, outcome) = (at("item_code"), at("started_s"), at("outcome"));
        Columns {
            item_code,
            started,
            outcome,
            last: item_code.max(started).max(outcome),
        }
    }

    /// One row's fields up to the last of the three. The error, which may hold commas, is
    /// the last column and never read.
    fn read(&self, line: &str) -> Option<SentRow> {
        let (mut item_code, mut started, mut acknowledged) = (None, None, None);
        for (index, field) in (Fields { rest: Some(line) })
            .take(self.last + 1)
            .enumerate()
        {
            if index == self.item_code {
                item_code = uuid::Uuid::parse_str(&field).ok();
            } else if index == self.started {
                started = field
                    .parse()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok());
            } else if index == self.outcome {
                acknowledged = Some(field == Outcome::Acknowledged.label());
            }
        }
        Some(SentRow {
            item_code: item_code?,
            acknowledged: acknowledged?,
            started: started?,
        })
    }
}

/// The fields of one CSV line, quotes undone; `rest` is `None` after the last.
struct Fields<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = std::borrow::Cow<'a, str>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest.take()?;
        if let Some(quoted) = rest.strip_prefix('"') {
            // Up to the quote not followed by another; "" is a quote inside.
            let mut text = String::new();
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                if c != '"' {
                    text.push(c);
                } else if quoted[i + 1..].starts_with('"') {
                    text.push('"');
                    chars.next();
                } else {
                    self.rest = quoted[i + 1..].strip_prefix(',');
                    return Some(text.into());
                }
            }
            return None;
        }
        let (field, after) = match rest.split_once(',') {
            Some((field, after)) => (field, Some(after)),
            None => (rest, None),
        };
        self.rest = after;
        Some(field.into())
    }
}

/// Why `requests.csv` could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum CsvReadError {
    #[error("{0}")]
    Io(io::Error),
    #[error("its first line is not the header this version writes")]
    Header,
    #[error("line {line} is not a request record")]
    Row { line: usize },
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
    fn rows_read_back_give_each_code_its_outcome_and_start() {
        let mut w = CsvWriter::new(Vec::new()).unwrap();
        let mut quoted = record(Outcome::TimedOut, Some("reset, \"then\"\nagain"));
        quoted.item_code = uuid::Uuid::new_v4();
        quoted.request_id = "a,\"b\"".into();
        w.write(&record(Outcome::Acknowledged, None)).unwrap();
        w.write(&quoted).unwrap();
        let text = w.finish().unwrap();
        let mut rows = Vec::new();
        assert_eq!(read_sent(&text[..], |row| rows.push(row)).unwrap(), 2);
        let started = Duration::from_millis(1002);
        assert_eq!(
            rows,
            [
                SentRow {
                    item_code: uuid::Uuid::nil(),
                    acknowledged: true,
                    started
                },
                SentRow {
                    item_code: quoted.item_code,
                    acknowledged: false,
                    started
                },
            ]
        );
    }

    #[test]
    fn a_row_that_is_not_a_record_is_an_error_naming_its_line() {
        let text = format!("{CSV_HEADER}\n1,not-a-uuid,r,,0,0,0,0,acknowledged,,1,0,\n");
        let err = read_sent(text.as_bytes(), |_| {}).unwrap_err();
        assert_eq!(err.to_string(), "line 2 is not a request record");
        let err = read_sent(&b"seq,other\n"[..], |_| {}).unwrap_err();
        assert!(matches!(err, CsvReadError::Header));
    }

    #[test]
    fn times_are_whole_microseconds_with_fixed_decimals() {
        let d = Duration::from_nanos(61_234_567_891);
        assert_eq!(Fixed::seconds(d).to_string(), "61.234567");
        assert_eq!(Fixed::millis(d).to_string(), "61234.567");
        assert_eq!(Fixed::seconds(Duration::ZERO).to_string(), "0.000000");
        assert_eq!(Fixed::millis(Duration::from_micros(5)).to_string(), "0.005");
        assert_eq!(Blank(None::<u16>).to_string(), "");
        assert_eq!(Blank(Some(503)).to_string(), "503");
    }

    #[test]
    fn lag_is_actual_minus_intended_send() {
        assert_eq!(
            record(Outcome::TimedOut, None).lag(),
            Duration::from_millis(2)
        );
    }
}
