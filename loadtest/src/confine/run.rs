//! `loadtest confine`: run a command confined, forwarding the signals it should get, and
//! report an OOM kill.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::unistd::Pid;

use super::cgroup::Cgroup;
use super::limits::{Limits, format_bytes};

/// Signals received while [`run_confined`] waits, to pass on to the command
/// (0 = none pending).
pub(super) static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
    // A signal the kernel raised for the terminal (Ctrl-C: si_code SI_KERNEL) went to
    // the whole foreground process group, the command included: do not send it twice.
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    if !from_terminal {
        PENDING_SIGNAL.store(signal, Ordering::SeqCst);
    }
}

pub(super) const FORWARDED_SIGNALS: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Installs the forwarding handlers; restores the previous ones on drop.
pub(super) struct SignalForwarding {
    pub(super) previous: Vec<(Signal, SigAction)>,
}

impl SignalForwarding {
    pub(super) fn install() -> SignalForwarding {
        let action = SigAction::new(
            SigHandler::SigAction(remember_signal),
            SaFlags::SA_SIGINFO | SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        let mut previous = Vec::new();
        for signal in FORWARDED_SIGNALS {
            // SAFETY: the handler is async-signal-safe: it reads the siginfo the kernel
            // passes and stores into an atomic, nothing else.
            if let Ok(old) = unsafe { sigaction(signal, &action) } {
                previous.push((signal, old));
            }
        }
        SignalForwarding { previous }
    }
}

impl Drop for SignalForwarding {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restores the action sigaction returned for this signal before.
            let _ = unsafe { sigaction(*signal, old) };
        }
    }
}

/// `loadtest confine --cpus N --memory SIZE -- COMMAND...`: runs COMMAND (with inherited
/// stdin/stdout/stderr) in a fresh cgroup with `limits`, passes SIGINT/SIGTERM/SIGHUP/
/// SIGQUIT sent to us on to it, waits, says on stderr when the OOM killer killed it (or a
/// process it started), removes the cgroup, and returns the command's exit code (128 +
/// signal number when a signal killed it, as shells do). Like a VM shutting down, the
/// cgroup's removal kills anything the command left running in it.
pub fn run_confined(limits: &Limits, argv: &[OsString]) -> anyhow::Result<ExitCode> {
    let Some((program, args)) = argv.split_first() else {
        anyhow::bail!(
            "nothing to run: give the command after --, e.g. loadtest confine --cpus 1 --memory 2G -- purchasing-api"
        );
    };
    if limits.is_unconfined() {
        anyhow::bail!(
            "no limit given: pass --cpus and/or --memory (e.g. --cpus 1 --memory 2G), or run the command directly"
        );
    }
    let name = program.to_string_lossy().into_owned();
    let cgroup = Cgroup::create(limits)?;
    let oom_before = cgroup.oom_kills().unwrap_or(0);

    let mut command = Command::new(program);
    command.args(args);
    cgroup.confine_command(&mut command);

    PENDING_SIGNAL.store(0, Ordering::SeqCst);
    let forwarding = SignalForwarding::install();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            drop(forwarding);
            anyhow::bail!(
                "cannot run {name} confined ({}): {e}; check the command exists and is executable",
                cgroup.version()
            );
        }
    };
    let pid = child.id() as libc::pid_t;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let signal = PENDING_SIGNAL.swap(0, Ordering::SeqCst);
        // The child is not reaped yet, so the pid is still its.
        if let Ok(signal) = Signal::try_from(signal) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(forwarding);
    let status = status.map_err(|e| anyhow::anyhow!("cannot wait for {name}: {e}"))?;

    let oom_now = wait_for_oom_count(&cgroup, oom_before, status.signal() == Some(libc::SIGKILL));
    if oom_now > oom_before {
        let limit = limits
            .memory_bytes
            .map(format_bytes)
            .unwrap_or_else(|| "none".to_string());
        if status.signal() == Some(libc::SIGKILL) {
            eprintln!("loadtest confine: {name} was OOM-killed (memory limit {limit})");
        } else {
            eprintln!(
                "loadtest confine: a process started by {name} was OOM-killed (memory limit {limit})"
            );
        }
    }
    drop(cgroup);
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    Ok(ExitCode::from(
        u8::try_from(code.clamp(0, 255)).unwrap_or(1),
    ))
}

/// The cgroup's OOM-kill count after a process in it ended. The kernel counts the kill
/// just after sending SIGKILL, which is nearly always before the victim's exit is seen;
/// when the death was by SIGKILL, wait up to 200 ms for the count to catch up.
pub(crate) fn wait_for_oom_count(cgroup: &Cgroup, before: u64, sigkilled: bool) -> u64 {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        let now = cgroup.oom_kills().unwrap_or(before);
        if now > before || !sigkilled || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
