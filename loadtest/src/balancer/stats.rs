//! Reading HAProxy's stats socket (`show stat`) and sampling it during a run: node
//! states, sessions, queue, and the moments a node goes out of rotation or back.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::haproxy::STATS_EVERY;
use crate::report::model::{BalancerSample, Transition};
use crate::server::{process_cpu_seconds, seconds_since};

/// Reads `show stat` from a stats socket: the rows of one backend.
#[derive(Debug, Clone)]
pub struct StatsReader {
    socket: PathBuf,
    backend: String,
}

impl StatsReader {
    /// A reader of `backend`'s rows through the stats socket at `socket` (the lab's own
    /// HAProxy, or one the user runs: `show stat` needs no admin level).
    pub fn new(socket: PathBuf, backend: &str) -> StatsReader {
        StatsReader {
            socket,
            backend: backend.to_string(),
        }
    }

    /// The rows of the backend's servers (the nodes), and the backend's own row.
    pub fn read(&self) -> io::Result<Vec<ServerStat>> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"show stat\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(parse_show_stat(&text, &self.backend))
    }

    /// The backend's servers by name, in HAProxy's order (for a balancer the lab did not
    /// configure). An error names the socket and what to check.
    pub fn servers(&self) -> Result<Vec<String>, String> {
        let rows = self.read().map_err(|e| {
            format!(
                "cannot read HAProxy's stats from {}: {e} (is it HAProxy's `stats socket`, and may this user open it?)",
                self.socket.display()
            )
        })?;
        let names: Vec<String> = rows
            .into_iter()
            .filter(|r| r.name != "BACKEND")
            .map(|r| r.name)
            .collect();
        if names.is_empty() {
            return Err(format!(
                "HAProxy's stats at {} show no servers in a backend named {:?}: give the backend's name with --balancer-backend",
                self.socket.display(),
                self.backend
            ));
        }
        Ok(names)
    }
}

/// One row of `show stat` for the backend: a node, or the backend itself
/// (`name == "BACKEND"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerStat {
    pub name: String,
    /// As HAProxy says it: "UP", "DOWN", "UP 1/2" (failing, still in), "DOWN 1/2"
    /// (recovering, still out), "MAINT", "no check".
    pub status: String,
    /// Requests in progress on it now.
    pub sessions: u64,
    /// Requests waiting in HAProxy's queue for it now.
    pub queued: u64,
    /// Requests it has handled so far.
    pub total: u64,
}

impl ServerStat {
    /// Whether HAProxy sends it traffic now ("UP", "UP 1/2", "no check").
    pub fn is_up(&self) -> bool {
        self.status.starts_with("UP") || self.status == "no check"
    }
}

/// Parses `show stat`'s CSV (a `# pxname,svname,…` header, then rows), keeping the rows
/// of `backend`. Columns are found by name, so other HAProxy versions read the same.
pub fn parse_show_stat(text: &str, backend: &str) -> Vec<ServerStat> {
    let mut lines = text.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    let at = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(status), Some(scur), Some(qcur), Some(stot)) = (
        at("pxname"),
        at("svname"),
        at("status"),
        at("scur"),
        at("qcur"),
        at("stot"),
    ) else {
        return Vec::new();
    };
    let number = |fields: &[&str], i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    lines
        .map(|line| line.split(',').collect::<Vec<&str>>())
        .filter(|f| f.get(px) == Some(&backend))
        .map(|f| ServerStat {
            name: f.get(sv).unwrap_or(&"").to_string(),
            status: f.get(status).unwrap_or(&"").to_string(),
            sessions: number(&f, scur),
            queued: number(&f, qcur),
            total: number(&f, stot),
        })
        .collect()
}

/// What the sampler saw.
#[derive(Debug, Clone, Default)]
pub struct SampledStats {
    /// One every [`STATS_EVERY`]·`keep_every` (the timeline).
    pub samples: Vec<BalancerSample>,
    /// Every change of a node's state, seen to [`STATS_EVERY`].
    pub transitions: Vec<Transition>,
    /// HAProxy's CPU time at the last sample, from /proc (seconds).
    pub cpu_seconds: Option<f64>,
    /// Stats reads that failed (HAProxy busy or gone).
    pub failed_reads: u64,
    /// Per node, the requests HAProxy had sent it (`stot`) at the first and the last
    /// good read: their difference is what it sent during the run.
    pub first_totals: Vec<u64>,
    pub last_totals: Vec<u64>,
}

/// Polls the stats socket every [`STATS_EVERY`] on a thread of its own until finished.
pub struct StatsSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<SampledStats>>,
}

impl StatsSampler {
    /// Starts sampling `nodes` (by name, in order); times are seconds since `epoch`; a
    /// timeline sample is kept every `keep_every` polls. `pid` is HAProxy's, for its CPU.
    pub fn start(
        reader: StatsReader,
        nodes: Vec<String>,
        pid: Option<u32>,
        epoch: Instant,
        keep_every: u32,
    ) -> StatsSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("balancer-stats".into())
                .spawn(move || sample_loop(&reader, &nodes, pid, epoch, keep_every, &stop))
                .ok()
        };
        StatsSampler { stop, thread }
    }

    /// Stops sampling and returns what was seen.
    pub fn finish(mut self) -> SampledStats {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for StatsSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn sample_loop(
    reader: &StatsReader,
    nodes: &[String],
    pid: Option<u32>,
    epoch: Instant,
    keep_every: u32,
    stop: &AtomicBool,
) -> SampledStats {
    let mut seen = SampledStats::default();
    let mut last_up: Vec<Option<bool>> = vec![None; nodes.len()];
    let mut polls: u32 = 0;
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let t_s = seconds_since(epoch, Instant::now());
        match reader.read() {
            Ok(rows) => {
                let sample = record(&mut seen, &mut last_up, nodes, &rows, t_s);
                if polls.is_multiple_of(keep_every.max(1)) {
                    seen.samples.push(sample);
                }
            }
            Err(_) => seen.failed_reads += 1,
        }
        if let Some(cpu) = pid.and_then(process_cpu_seconds) {
            seen.cpu_seconds = Some(cpu);
        }
        polls = polls.wrapping_add(1);
        next += STATS_EVERY;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    seen
}

/// One poll's `rows` at `t_s`: a transition for each node whose state changed since the
/// last poll (`last_up`), the requests sent to each so far, and the poll as a sample.
fn record(
    seen: &mut SampledStats,
    last_up: &mut [Option<bool>],
    nodes: &[String],
    rows: &[ServerStat],
    t_s: f64,
) -> BalancerSample {
    let row = |name: &str| rows.iter().find(|r| r.name == name);
    let mut sample = BalancerSample {
        t_s,
        queued: row("BACKEND").map_or(0, |b| b.queued),
        ..Default::default()
    };
    for (i, name) in nodes.iter().enumerate() {
        let stat = row(name);
        let up = stat.is_some_and(ServerStat::is_up);
        if last_up[i].is_some_and(|was| was != up) {
            seen.transitions.push(Transition {
                t_s,
                node: name.clone(),
                up,
            });
        }
        last_up[i] = Some(up);
        sample.up.push(up);
        sample.sessions.push(stat.map_or(0, |s| s.sessions));
    }
    let totals: Vec<u64> = nodes
        .iter()
        .map(|name| row(name).map_or(0, |s| s.total))
        .collect();
    if seen.first_totals.is_empty() {
        seen.first_totals = totals.clone();
    }
    seen.last_totals = totals;
    sample
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::haproxy::BACKEND;

    #[test]
    fn show_stat_rows_are_read_by_column_name() {
        let text = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n\
                    purchasing,FRONTEND,,,3,5,10000,40,0,0,0,0,0,,,,,OPEN\n\
                    nodes,api0,1,2,2,4,5,20,0,0,,0,,0,0,0,0,UP\n\
                    nodes,api1,0,0,0,3,5,19,0,0,,0,,0,0,0,0,DOWN 1/2\n\
                    nodes,BACKEND,4,4,2,5,1000,39,0,0,0,0,,0,0,0,0,UP\n";
        let rows = parse_show_stat(text, BACKEND);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            ServerStat {
                name: "api0".into(),
                status: "UP".into(),
                sessions: 2,
                queued: 1,
                total: 20
            }
        );
        assert!(!rows[1].is_up(), "DOWN 1/2 is still out of rotation");
        assert_eq!(rows[2].name, "BACKEND");
        assert_eq!(rows[2].queued, 4);
        assert!(parse_show_stat("garbage", BACKEND).is_empty());
        assert!(parse_show_stat(text, "other").is_empty());
    }
}
