//! The server's output: its stdout/stderr read in chunks, split into bounded lines, and
//! the last lines of stderr kept for error messages.

use std::io::{self, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::spec::{MAX_LINE_BYTES, TAIL_LINES};

/// The last lines of a server's stderr.
#[derive(Debug, Default)]
pub(super) struct Tail {
    pub(super) lines: std::collections::VecDeque<String>,
    pub(super) closed: bool,
}

impl Tail {
    pub(super) fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
    }
}

/// The tail once the stream has closed (waiting up to 500 ms for that: the process has
/// ended, so its stderr closes unless something it started still holds it).
pub(super) fn tail_after_close(tail: &Mutex<Tail>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if tail.closed || Instant::now() >= deadline {
            return tail.lines.iter().cloned().collect();
        }
        drop(tail);
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(super) fn format_tail(lines: &[String]) -> String {
    join_last_lines(lines).map_or_else(
        || "; it wrote nothing on stderr".to_string(),
        |last| format!("; its last stderr lines: {last}"),
    )
}

/// The last five non-blank lines of a process's output, each cut at 300 characters, on
/// one line joined by " | " (an error message stays one line); `None` if all are blank.
pub(crate) fn join_last_lines(lines: &[String]) -> Option<String> {
    let useful: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    if useful.is_empty() {
        return None;
    }
    let last: Vec<String> = useful
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|l| truncate(l, 300))
        .collect();
    Some(last.join(" | "))
}

pub(super) fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max_chars).collect();
        format!("{cut}…")
    }
}

/// Calls `on_chunk` with each piece of `reader` as it arrives, until end of file or an
/// error.
pub(super) fn for_each_chunk(mut reader: impl Read, mut on_chunk: impl FnMut(&[u8])) {
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => on_chunk(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// Cuts a byte stream into lines (lossy UTF-8, without the newline, at most
/// [`MAX_LINE_BYTES`] kept of each).
#[derive(Debug, Default)]
pub(super) struct LineSplitter {
    pub(super) line: Vec<u8>,
}

impl LineSplitter {
    pub(super) fn feed(&mut self, mut chunk: &[u8], mut on_line: impl FnMut(&str)) {
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            self.keep(&chunk[..i]);
            on_line(&String::from_utf8_lossy(&self.line));
            self.line.clear();
            chunk = &chunk[i + 1..];
        }
        self.keep(chunk);
    }

    /// The last line, if the stream did not end with a newline.
    pub(super) fn finish(self, mut on_line: impl FnMut(&str)) {
        if !self.line.is_empty() {
            on_line(&String::from_utf8_lossy(&self.line));
        }
    }

    pub(super) fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}
