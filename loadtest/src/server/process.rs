//! Process helpers: signals to a child or its group, dying with the spawning thread,
//! waiting without reaping, and exit statuses described in words.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};

use nix::errno::Errno;
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::{Pid, getppid};

/// Whether process `pid` is stopped (SIGSTOP: the fault plan's `pause`), read from its
/// state in `/proc/PID/stat` — `T`, after the command name in parentheses.
pub(crate) fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
    })
}

/// Sends `signal` to the process `pid` (`-pgid` is not accepted: see
/// [`signal_group`]). Callers make sure `pid` is their child and not reaped yet, so it
/// cannot have been reused by another process. Signal 0 only checks that it exists.
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 0
        && let Some(signal) = as_signal(signal)
    {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Sends `signal` to every process in the process group `pgid` (a child started as the
/// leader of its own group). Same rule as [`signal`]: the leader is not reaped yet, so its
/// group id cannot have been reused.
pub(crate) fn signal_group(pgid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid)
        && pgid > 1
        && let Some(signal) = as_signal(signal)
    {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// `Some(None)` for signal 0 (nix's "check only"), `None` for a number that is no signal.
fn as_signal(signal: libc::c_int) -> Option<Option<Signal>> {
    if signal == 0 {
        return Some(None);
    }
    Signal::try_from(signal).ok().map(Some)
}

/// Makes a child started with `command` get SIGKILL when the thread that starts it ends —
/// which, for our supervisor threads, is when the lab ends, however it ends (even by
/// SIGKILL). Survives the child's `exec`, not its own children's `fork`.
pub(crate) fn die_with_spawning_thread(command: &mut Command) {
    let parent = Pid::from_raw(std::process::id() as libc::pid_t);
    // SAFETY: the hook runs in the forked child before exec; prctl and getppid are
    // async-signal-safe syscalls, and nothing is allocated (an io::Error from an errno
    // does not allocate).
    unsafe {
        command.pre_exec(move || {
            set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The parent may have died before prctl took effect.
            if getppid() != parent {
                return Err(io::Error::from(Errno::ESRCH));
            }
            Ok(())
        });
    }
}

/// Blocks until our child `pid` has ended, without reaping it: until it is reaped its PID
/// (and its process group id) cannot be reused, so it may still be signalled safely.
pub(crate) fn wait_for_exit_unreaped(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // WNOWAIT leaves the child reapable.
    while let Err(Errno::EINTR) = waitid(
        Id::Pid(Pid::from_raw(pid)),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
    ) {}
}

/// e.g. "exited with status 1", "killed by signal 11 (SIGSEGV), core dumped".
pub(crate) fn describe_status(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "ended (its exit status could not be read)".to_string();
    };
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    if let Some(signal) = status.signal() {
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        return format!("killed by signal {signal} ({}){core}", signal_name(signal));
    }
    format!("ended ({status})")
}

/// The usual name of a signal number on Linux.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}
