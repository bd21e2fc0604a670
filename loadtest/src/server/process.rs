//! Process helpers: signals to a child or its group, dying with the spawning thread,
//! waiting without reaping, and exit statuses described in words.

use std::io::{self};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};

/// Sends `signal` to the process `pid` (`-pgid` is not accepted: see
/// [`signal_group`]). Callers make sure `pid` is their child and not reaped yet, so it
/// cannot have been reused by another process.
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 0
    {
        // SAFETY: plain syscall. Callers hold the state lock and the child is not reaped
        // yet, so the PID is still our child's.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Sends `signal` to every process in the process group `pgid` (a child started as the
/// leader of its own group). Same rule as [`signal`]: the leader is not reaped yet, so its
/// group id cannot have been reused.
pub(crate) fn signal_group(pgid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid)
        && pgid > 1
    {
        // SAFETY: plain syscall on a negative pid, i.e. a process group.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// Makes a child started with `command` get SIGKILL when the thread that starts it ends —
/// which, for our supervisor threads, is when the lab ends, however it ends (even by
/// SIGKILL). Survives the child's `exec`, not its own children's `fork`.
pub(crate) fn die_with_spawning_thread(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe syscalls; nothing is allocated.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Blocks until our child `pid` has ended, without reaping it: until it is reaped its PID
/// (and its process group id) cannot be reused, so it may still be signalled safely.
pub(crate) fn wait_for_exit_unreaped(pid: u32) {
    loop {
        // SAFETY: waitid fills `info`; WNOWAIT leaves the child reapable.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let result = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if result == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
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
