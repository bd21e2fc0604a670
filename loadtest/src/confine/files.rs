//! Reading and writing cgroup files.

use std::fs;
use std::io;
use std::path::Path;

use super::error::{ConfineError, io_error};

pub(super) fn write_file(path: &Path, value: &str) -> Result<(), ConfineError> {
    fs::write(path, value)
        .map_err(|e| io_error(format!("writing {value} to {}", path.display()), e))
}

pub(super) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(super) fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|text| text.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The value of `key` in a "key value" per line file (memory.events, cpu.stat…).
pub(super) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == key).then(|| words.next()?.parse().ok())?
    })
}

pub(super) fn subtree_has(dir: &Path, controllers: &[&str]) -> bool {
    let enabled = read_words(&dir.join("cgroup.subtree_control"));
    controllers.iter().all(|c| enabled.iter().any(|e| e == c))
}

pub(super) fn enable_subtree_controllers(dir: &Path, controllers: &[&str]) -> io::Result<()> {
    if subtree_has(dir, controllers) {
        return Ok(());
    }
    let request: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
    fs::write(dir.join("cgroup.subtree_control"), request.join(" "))
}
