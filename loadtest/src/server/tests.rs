use super::spec::{MAX_LINE_BYTES, TAIL_LINES};
use super::{output::*, process::*, sampler::*, state::*};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

#[test]
fn a_gauge_is_read_from_the_exposition() {
    let text = "HTTP/1.1 200 OK\r\n\r\n# HELP purchasing_admission_limit x\n\
                # TYPE purchasing_admission_limit gauge\n\
                purchasing_admission_limit_cap 11\n\
                purchasing_admission_limit 7\n";
    assert_eq!(parse_gauge(text, ADMISSION_LIMIT), Some(7));
    // Off (0), missing or garbage: no sample.
    assert_eq!(
        parse_gauge("purchasing_admission_limit 0\n", ADMISSION_LIMIT),
        None
    );
    assert_eq!(parse_gauge("", ADMISSION_LIMIT), None);
    assert_eq!(
        parse_gauge("purchasing_admission_limit NaN\n", ADMISSION_LIMIT),
        None
    );
}

#[test]
fn stat_cpu_is_read_after_the_command_name() {
    let stat = "1234 (purchasing api) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
    assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
    assert_eq!(parse_stat_cpu_ticks("garbage"), None);
}

#[test]
fn statuses_are_described() {
    assert_eq!(
        describe_status(Some(ExitStatus::from_raw(1 << 8))),
        "exited with status 1"
    );
    assert_eq!(
        describe_status(Some(ExitStatus::from_raw(libc::SIGSEGV))),
        "killed by signal 11 (SIGSEGV)"
    );
    assert_eq!(
        describe_status(None),
        "ended (its exit status could not be read)"
    );
    assert_eq!(signal_name(64), "signal 64");
}

#[test]
fn lines_are_split_and_capped() {
    let long = "x".repeat(MAX_LINE_BYTES + 100);
    let input = format!("first\n{long}\nlast-without-newline");
    let mut lines = Vec::new();
    let mut splitter = LineSplitter::default();
    // Fed in uneven pieces, as a pipe delivers them.
    for_each_chunk(input.as_bytes(), |chunk| {
        for piece in chunk.chunks(3) {
            splitter.feed(piece, |l| lines.push(l.to_string()));
        }
    });
    splitter.finish(|l| lines.push(l.to_string()));
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "first");
    assert_eq!(lines[1].len(), MAX_LINE_BYTES);
    assert_eq!(lines[2], "last-without-newline");
}

#[test]
fn samples_before_the_epoch_are_dropped_but_the_last() {
    let base = Instant::now();
    let raw: Vec<RawSample> = (0..6)
        .map(|i| RawSample {
            at: base + Duration::from_millis(250 * i),
            memory: Some(i),
            rss: Some(i),
            cpu_percent: None,
            threads: Some(1),
            admission_limit: None,
        })
        .collect();
    let epoch = base + Duration::from_millis(600);
    let samples = samples_since(&raw, epoch);
    assert_eq!(samples.len(), 4);
    assert!((samples[0].t_s + 0.1).abs() < 1e-9, "{}", samples[0].t_s);
    assert!((samples[1].t_s - 0.15).abs() < 1e-9);
    assert!(samples.windows(2).all(|w| w[0].t_s < w[1].t_s));
}

#[test]
fn tails_are_bounded_and_formatted() {
    let mut tail = Tail::default();
    for i in 0..50 {
        tail.push(&format!("line {i}"));
    }
    assert_eq!(tail.lines.len(), TAIL_LINES);
    let lines: Vec<String> = tail.lines.iter().cloned().collect();
    assert_eq!(
        format_tail(&lines),
        "; its last stderr lines: line 45 | line 46 | line 47 | line 48 | line 49"
    );
    assert_eq!(format_tail(&[]), "; it wrote nothing on stderr");
}
