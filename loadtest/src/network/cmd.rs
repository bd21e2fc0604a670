//! The programs that build and break the network (`ip`, `iptables`, `iptables-restore`,
//! `tc`), run as child processes, and their errors.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const IP: &str = "ip";
pub const IPTABLES: &str = "iptables";
pub const IPTABLES_RESTORE: &str = "iptables-restore";
pub const TC: &str = "tc";

/// What `--network` needs, for messages: root, and the programs `ip` and `iptables`.
pub const NETWORK_REQUIREMENTS: &str = "--network needs root and the programs ip (Debian package iproute2) and iptables (Debian package iptables): run as root, apt-get install -y iproute2 iptables";

/// Why the network could not be built, changed or removed: one line saying what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// A prerequisite is missing (root, a program).
    #[error("cannot build the lab network: {0}")]
    Missing(String),
    /// A bad option (`--network-cidr`, a topology too large for it).
    #[error("cannot build the lab network: {0}")]
    Usage(String),
    /// A command failed.
    #[error("the lab network: `{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
}

/// Where `program` is: on `PATH`, or in `/usr/sbin` and `/sbin`, where Debian puts the
/// network programs (not on every user's `PATH`).
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// [`find`], or the one-line error saying what to install.
pub fn locate(program: &str) -> Result<PathBuf, NetworkError> {
    find(program).ok_or_else(|| {
        NetworkError::Missing(format!(
            "{program} is not installed; {NETWORK_REQUIREMENTS}"
        ))
    })
}

/// Runs `program args…` and returns its stdout; its stderr is the error.
pub fn run(program: &str, args: &[&str]) -> Result<String, NetworkError> {
    run_with_input(program, args, None)
}

/// Runs `program args…` with `input` on its stdin.
pub fn run_with_input(
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, NetworkError> {
    let command_line = || format!("{program} {}", args.join(" "));
    let failed = |e: std::io::Error| NetworkError::Command {
        command: command_line(),
        stderr: e.to_string(),
    };
    let path = locate(program)?;
    let mut child = Command::new(path)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let output = child.wait_with_output().map_err(failed)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(NetworkError::Command {
            command: command_line(),
            stderr: stderr
                .trim()
                .lines()
                .next()
                .unwrap_or("(no output)")
                .to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `ip ARGS…`.
pub fn ip(args: &[&str]) -> Result<String, NetworkError> {
    run(IP, args)
}

/// `PROGRAM ARGS…` inside namespace `ns` (`ip netns exec`, which also gives it the
/// namespace's own /sys).
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<String, NetworkError> {
    in_ns_with_input(ns, program, args, None)
}

/// [`in_ns`] with `input` on the program's stdin.
pub fn in_ns_with_input(
    ns: &str,
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, NetworkError> {
    let path = locate(program)?;
    let path = path.display().to_string();
    let mut full = vec!["netns", "exec", ns, path.as_str()];
    full.extend_from_slice(args);
    run_with_input(IP, &full, input)
}
