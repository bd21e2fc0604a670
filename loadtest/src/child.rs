//! A child process (RabbitMQ, epmd, HAProxy) started by a thread of its own, which then
//! waits for it and reaps it: [`Supervised`]. One definition for every helper process the
//! lab runs beside the system under test (the server itself has its own supervisor in
//! [`crate::server`], which also restarts it and reads its exact CPU time).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::server::{
    describe_status, die_with_spawning_thread, signal_group, wait_for_exit_unreaped,
};

/// How long to wait for a killed child to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A child process started by a thread of its own, which then waits for it and reaps it.
///
/// The thread lives exactly as long as the child, so the parent-death signal (SIGKILL,
/// set before `exec`) fires only when the lab itself ends; and since only that thread
/// reaps, and it reaps under the lock after killing what is left of the child's process
/// group, a signal sent under the lock never reaches a reused PID.
pub(crate) struct Supervised {
    pub(crate) pid: u32,
    state: Arc<ChildState>,
    thread: Option<JoinHandle<()>>,
}

struct ChildState {
    /// `None` while the child runs; once reaped, its exit status (`None` inside if it
    /// could not be read).
    exit: Mutex<Option<Option<ExitStatus>>>,
    ended: Condvar,
}

impl ChildState {
    fn lock(&self) -> MutexGuard<'_, Option<Option<ExitStatus>>> {
        self.exit.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Supervised {
    /// Starts `command` as the leader of a new process group (so a Ctrl-C at the terminal
    /// reaches only us, and the group can be killed as one).
    pub(crate) fn spawn(name: &str, command: Command) -> io::Result<Supervised> {
        Self::spawn_piped(name, command).map(|(child, _, _)| child)
    }

    /// [`Supervised::spawn`], handing back the child's stdout and stderr when `command`
    /// asked for pipes (`Stdio::piped()`); read them, or the child blocks once they fill.
    pub(crate) fn spawn_piped(
        name: &str,
        mut command: Command,
    ) -> io::Result<(Supervised, Option<ChildStdout>, Option<ChildStderr>)> {
        command.process_group(0);
        die_with_spawning_thread(&mut command);
        let state = Arc::new(ChildState {
            exit: Mutex::new(None),
            ended: Condvar::new(),
        });
        type Started = (u32, Option<ChildStdout>, Option<ChildStderr>);
        let (pid_tx, pid_rx) = mpsc::channel::<io::Result<Started>>();
        let thread = {
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name(format!("child-{name}"))
                .spawn(move || {
                    let mut child: Child = match command.spawn() {
                        Ok(child) => child,
                        Err(e) => {
                            let _ = pid_tx.send(Err(e));
                            return;
                        }
                    };
                    let pid = child.id();
                    let _ = pid_tx.send(Ok((pid, child.stdout.take(), child.stderr.take())));
                    wait_for_exit_unreaped(pid);
                    let mut exit = state.lock();
                    // Whatever the leader left in its group goes with it — and is gone
                    // before the child counts as ended, so "ended" means nothing of it
                    // runs any more (a SIGKILLed process takes a moment to exit, longer
                    // on a busy machine). The group id stays ours while the leader is
                    // not reaped.
                    signal_group(pid, libc::SIGKILL);
                    wait_until_group_is_gone(pid, KILL_WAIT);
                    // If the status cannot be read, the child is gone all the same.
                    *exit = Some(child.wait().ok());
                    drop(exit);
                    state.ended.notify_all();
                })?
        };
        match pid_rx.recv() {
            Ok(Ok((pid, stdout, stderr))) => Ok((
                Supervised {
                    pid,
                    state,
                    thread: Some(thread),
                },
                stdout,
                stderr,
            )),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(
                    "the supervising thread ended unexpectedly",
                ))
            }
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.state.lock().is_none()
    }

    /// How the child ended ("exited with status 1", "killed by signal 9 (SIGKILL)"), or
    /// `None` while it runs.
    pub(crate) fn ended(&self) -> Option<String> {
        self.state.lock().map(describe_status)
    }

    /// Runs `action` with the child's PID if it has not been reaped (under the lock, so
    /// it cannot be reaped meanwhile).
    pub(crate) fn with_running<T>(&self, action: impl FnOnce(u32) -> T) -> Option<T> {
        let exit = self.state.lock();
        exit.is_none().then(|| action(self.pid))
    }

    /// Waits up to `timeout` for the child to end; whether it did.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut exit = self.state.lock();
        while exit.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            exit = self
                .state
                .ended
                .wait_timeout(exit, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// SIGTERM to the group, SIGKILL after `grace` (at once when zero), and waits for the
    /// end. Returns whether it ended within `grace`.
    pub(crate) fn terminate(&self, grace: Duration) -> bool {
        let in_grace = !grace.is_zero() && {
            // A paused (SIGSTOPped) child would hold SIGTERM until the grace is over.
            self.with_running(|pid| {
                signal_group(pid, libc::SIGCONT);
                signal_group(pid, libc::SIGTERM)
            });
            self.wait(grace)
        };
        self.kill();
        in_grace
    }

    /// SIGKILL to the group if still running, and waits (bounded) until it is reaped.
    pub(crate) fn kill(&self) {
        self.with_running(|pid| signal_group(pid, libc::SIGKILL));
        self.wait(KILL_WAIT);
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
        if !self.is_running()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

/// Waits (at most `limit`) until no process but the leader itself is left in the process
/// group `leader` leads, reading each process's group from /proc.
fn wait_until_group_is_gone(leader: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while others_in_group(leader) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process other than `leader` is in the process group `leader`.
fn others_in_group(leader: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            return false;
        };
        pid != leader
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| process_group(&stat))
                == Some(leader)
    })
}

/// The process group (field 5) of a /proc/PID/stat line; the command name in parentheses
/// may hold spaces, so fields are counted after its closing parenthesis.
fn process_group(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_group_is_read_after_the_command_name() {
        assert_eq!(process_group("42 (beam.smp) S 1 42 42 0 -1"), Some(42));
        assert_eq!(process_group("7 (a (b) c) R 3 9 7 0"), Some(9));
        assert_eq!(process_group("garbage"), None);
    }

    #[test]
    fn our_own_group_has_us_in_it() {
        // This test process is in some group led by someone; a group led by a PID that
        // does not exist has nobody in it.
        assert!(!others_in_group(u32::MAX - 1));
    }
}
