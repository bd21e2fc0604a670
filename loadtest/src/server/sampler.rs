//! The sampler: the cgroup's memory, the process's RSS, threads and CPU time, and the
//! admission limit scraped from `/metrics`, every `sample_every`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::confine::Cgroup;
use crate::report::ServerSample;

use super::state::{RawSample, Shared};

/// Samples at or after `epoch`, preceded by the last one before it (negative time).
pub(super) fn samples_since(raw: &[RawSample], epoch: Instant) -> Vec<ServerSample> {
    let first_after = raw.partition_point(|s| s.at < epoch);
    let start = first_after.saturating_sub(1);
    raw[start..]
        .iter()
        .map(|s| ServerSample {
            t_s: seconds_since(epoch, s.at),
            memory_bytes: s.memory,
            rss_bytes: s.rss,
            cpu_percent: s.cpu_percent,
            threads: s.threads,
            admission_limit: s.admission_limit,
        })
        .collect()
}

/// Seconds from `epoch` to `at`, negative when `at` is earlier.
pub(crate) fn seconds_since(epoch: Instant, at: Instant) -> f64 {
    match at.checked_duration_since(epoch) {
        Some(after) => after.as_secs_f64(),
        None => -epoch.duration_since(at).as_secs_f64(),
    }
}

pub(super) fn sample_loop(
    shared: &Shared,
    cgroup: Option<&Cgroup>,
    every: Duration,
) -> Vec<RawSample> {
    let ticks = clock_ticks();
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut previous: Option<(Instant, f64)> = None;
    let mut tick: u32 = 0;
    loop {
        let (at, process, carried, metrics_addr) = {
            let state = shared.lock();
            if state.sampler_stop {
                break;
            }
            // Read /proc under the lock: the supervisor cannot reap (and the PID cannot
            // be reused) meanwhile.
            let at = Instant::now();
            let process = state.child.map(|c| read_process(c.pid, ticks));
            let metrics_addr = state.child.and(state.metrics_addr);
            (at, process, state.cpu_carried_s, metrics_addr)
        };
        // Outside the lock: an HTTP round trip.
        let admission_limit = metrics_addr.and_then(|addr| scrape_gauge(addr, ADMISSION_LIMIT));
        let process = process.unwrap_or_default();
        let memory = match cgroup {
            Some(cgroup) => cgroup.memory_usage_bytes().or(process.rss),
            None => process.rss,
        };
        let mut cpu_total = carried + process.cpu_s.unwrap_or(0.0);
        let cpu_percent = previous.map(|(then, cpu_then)| {
            // A process that just exited may read low before its reaping carries its
            // exact total: never let the total go backwards.
            cpu_total = cpu_total.max(cpu_then);
            let wall = at.duration_since(then).as_secs_f64();
            if wall > 0.0 {
                (cpu_total - cpu_then) / wall * 100.0
            } else {
                0.0
            }
        });
        previous = Some((at, cpu_total));
        samples.push(RawSample {
            at,
            memory,
            rss: process.rss,
            cpu_percent,
            threads: process.threads,
            admission_limit,
        });

        // Absolute deadlines: no drift; skip ticks that were missed.
        tick = tick.saturating_add(1);
        let mut next = started + every * tick;
        let now = Instant::now();
        while next <= now {
            tick = tick.saturating_add(1);
            next = started + every * tick;
        }
        if shared.wait_until(next, |s| s.sampler_stop) {
            break;
        }
    }
    samples
}

/// The whole `GET /metrics` answer of the server at `addr` (headers included), or `None`
/// when it does not answer within [`SCRAPE_TIMEOUT`]. For samplers of other gauges
/// (the messaging monitor reads the worker's counters).
pub(crate) fn scrape_metrics(addr: SocketAddr) -> Option<String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT)).ok()?;
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        wire_contract::http::METRICS_PATH
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// The API's gauge of its admission limit (fixed, or where the adaptive controller has it).
pub(super) const ADMISSION_LIMIT: &str = "purchasing_admission_limit";

/// How long one scrape of `/metrics` may take. Short: a server too busy to answer within
/// it leaves a gap in the chart rather than delaying the memory and CPU samples.
pub(super) const SCRAPE_TIMEOUT: Duration = Duration::from_millis(200);

/// One unlabelled gauge from the server's `GET /metrics`, over a plain loopback HTTP/1.1
/// request (no client library: the sampler is a std thread). `None` when the server does
/// not answer in time or has no such gauge (or reports 0: admission control is off).
pub(crate) fn scrape_gauge(addr: SocketAddr, name: &str) -> Option<u64> {
    parse_gauge(&scrape_metrics(addr)?, name)
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition, if it is a
/// whole number above 0.
pub(super) fn parse_gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|v| *v >= 1.0 && v.is_finite())
        .map(|v| v as u64)
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ProcessSample {
    pub(super) rss: Option<u64>,
    pub(super) threads: Option<u64>,
    pub(super) cpu_s: Option<f64>,
}

pub(super) fn read_process(pid: u32, ticks: f64) -> ProcessSample {
    let mut sample = ProcessSample::default();
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
        // An exited process not reaped yet (a zombie) still lists `Threads: 1` but no
        // memory: it has neither any more, so the sample counts neither.
        && !status.lines().any(|l| l.starts_with("State:") && l.contains("zombie"))
    {
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix("VmRSS:") {
                sample.rss = rest
                    .split_whitespace()
                    .next()
                    .and_then(|kb| kb.parse::<u64>().ok())
                    .map(|kb| kb * 1024);
            } else if let Some(rest) = line.strip_prefix("Threads:") {
                sample.threads = rest.trim().parse().ok();
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        sample.cpu_s = parse_stat_cpu_ticks(&stat).map(|t| t as f64 / ticks);
    }
    sample
}

/// Clock ticks per second, the unit of /proc's CPU times (100 if it cannot be read).
pub(crate) fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

/// User + system CPU seconds a process has used so far (a helper the lab does not reap,
/// such as HAProxy, or the lab itself), from /proc/PID/stat.
pub(crate) fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|t| t as f64 / clock_ticks())
}

/// utime + stime (fields 14 and 15) of /proc/PID/stat, in clock ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after the last ')'.
pub(super) fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so field N is index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The system-wide OOM-kill count (`oom_kill` in /proc/vmstat), for unconfined runs.
pub(super) fn system_oom_kills() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/vmstat").ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

pub(super) fn timeval_s(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}
