//! The broker's output: its log files, appended to and read back for error messages.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::server::join_last_lines;

use super::data_dir::DataDir;
use super::options::TAIL_LINES;

/// The broker's stdout and stderr files, and where this start's output begins in them
/// (a kept directory keeps the output of earlier starts).
pub(super) struct Output {
    pub(super) stdout: PathBuf,
    pub(super) stderr: PathBuf,
    pub(super) stdout_from: u64,
    pub(super) stderr_from: u64,
}

impl Output {
    pub(super) fn at_end_of(dir: &DataDir) -> Output {
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let len = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Output {
            stdout_from: len(&stdout),
            stderr_from: len(&stderr),
            stdout,
            stderr,
        }
    }

    pub(super) fn open(&self) -> Result<(File, File), String> {
        Ok((open_append(&self.stdout)?, open_append(&self.stderr)?))
    }

    /// This start's output: stderr (where a failed boot says why), then stdout.
    pub(super) fn read(&self) -> String {
        let mut text = read_from(&self.stdout, self.stdout_from);
        text.push('\n');
        text.push_str(&read_from(&self.stderr, self.stderr_from));
        text
    }
}

pub(super) fn open_append(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot open {} for the broker's output: {e}; check the data directory's permissions",
                path.display()
            )
        })
}

/// A file's contents from `offset` on (at most its last 256 KiB), lossy UTF-8.
pub(super) fn read_from(path: &Path, offset: u64) -> String {
    const MAX: u64 = 256 * 1024;
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = offset.max(len.saturating_sub(MAX));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// "; {label}: line | line | …" with the last lines of `output`, or "" when it is empty.
pub(super) fn tail_note(output: &str, label: &str) -> String {
    let lines: Vec<String> = output
        .lines()
        .rev()
        .take(TAIL_LINES)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(str::to_string)
        .collect();
    join_last_lines(&lines).map_or_else(String::new, |last| format!("; {label}: {last}"))
}
