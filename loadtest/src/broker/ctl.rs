//! RabbitMQ's own command-line tools run against one of our nodes: `rabbitmqctl` (join a
//! cluster, read its status) and `rabbitmq-queues` (who leads a quorum queue).
//!
//! Each call starts an Erlang VM (1–2 s) that reaches the node through our epmd with the
//! node's cookie: the same `HOME` and `ERL_EPMD_PORT` as the node itself
//! ([`Broker::erlang_env`]), never Debian's `/usr/sbin` wrappers. A call is bounded in
//! time; past the deadline its whole process group is killed.

use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::handle::Broker;
use super::options::RABBITMQCTL;

/// `rabbitmq-queues`, beside [`RABBITMQCTL`].
pub const RABBITMQ_QUEUES: &str = "/usr/lib/rabbitmq/bin/rabbitmq-queues";

/// Why a call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{call}` gave no answer in time, so it was killed")]
    TimedOut { call: String },
    #[error("`{call}` failed ({status}): {said}")]
    Failed {
        call: String,
        status: String,
        said: String,
    },
    #[error("`{call}` answered what this lab cannot read: {said}")]
    Unreadable { call: String, said: String },
}

/// The tools, pointed at one node.
pub struct Ctl {
    node: String,
    env: Vec<(&'static str, OsString)>,
    /// The node's namespace (`--network`): the tools reach it on that loopback.
    netns: Option<crate::network::Netns>,
}

impl Ctl {
    pub fn of(broker: &Broker) -> Ctl {
        Ctl {
            node: broker.node_name().to_string(),
            env: broker.erlang_env(),
            netns: broker.netns().cloned(),
        }
    }

    /// `rabbitmqctl -n NODE ARGS…`; its standard output.
    pub fn run(&self, args: &[&str], deadline: Instant) -> Result<String, CtlError> {
        self.call(RABBITMQCTL, "rabbitmqctl", args, deadline)
    }

    /// The nodes `cluster_status` lists as running.
    pub fn running_nodes(&self, deadline: Instant) -> Result<Vec<String>, CtlError> {
        let args = ["cluster_status", "--formatter", "json"];
        let said = self.run(&args, deadline)?;
        let status: serde_json::Value = json_in(&said).ok_or_else(|| CtlError::Unreadable {
            call: "rabbitmqctl cluster_status".into(),
            said: one_line(&said),
        })?;
        Ok(names(&status["running_nodes"]))
    }

    /// The node that leads quorum queue `queue` (`rabbitmq-queues quorum_status`).
    pub fn quorum_leader(&self, queue: &str, deadline: Instant) -> Result<String, CtlError> {
        let args = ["quorum_status", queue, "--formatter", "json"];
        let said = self.call(RABBITMQ_QUEUES, "rabbitmq-queues", &args, deadline)?;
        let unreadable = || CtlError::Unreadable {
            call: format!("rabbitmq-queues quorum_status {queue}"),
            said: one_line(&said),
        };
        let members: serde_json::Value = json_in(&said).ok_or_else(unreadable)?;
        leader_in(&members).ok_or_else(unreadable)
    }

    /// The node that leads queue `queue`: its quorum leader, or for a classic queue the
    /// node its process runs on (`list_queues name pid`: `<NODE.1.234.0>`), which it dies
    /// with.
    pub fn queue_leader(&self, queue: &str, deadline: Instant) -> Result<String, CtlError> {
        let quorum = self.quorum_leader(queue, deadline);
        if quorum.is_ok() {
            return quorum;
        }
        // Tab-separated, not JSON: the JSON formatter prints a pid as `#PID<10987.740.0>`,
        // without the node it lives on; the plain one as `<NODE.1796568583.740.0>`.
        let args = [
            "list_queues",
            "--quiet",
            "--no-table-headers",
            "name",
            "type",
            "pid",
        ];
        let said = self.run(&args, deadline)?;
        let classic = classic_queue_node(&said, queue);
        // Not a classic queue either: the quorum call's error says why best (e.g. no
        // majority of its replicas is up, so it has no leader).
        classic.map_or(quorum, Ok)
    }

    /// How many of queue `queue`'s messages the broker has delivered and not had
    /// acknowledged (`list_queues name messages_unacknowledged`): messages a consumer
    /// holds, or that are on their way to one it can no longer reach, until its
    /// connection is declared dead and they are requeued.
    pub fn unacknowledged(&self, queue: &str, deadline: Instant) -> Result<u64, CtlError> {
        let args = [
            "list_queues",
            "--quiet",
            "--no-table-headers",
            "name",
            "messages_unacknowledged",
        ];
        let said = self.run(&args, deadline)?;
        unacknowledged_in(&said, queue).ok_or_else(|| CtlError::Unreadable {
            call: "rabbitmqctl list_queues name messages_unacknowledged".into(),
            said: one_line(&said),
        })
    }

    fn call(
        &self,
        program: &'static str,
        name: &'static str,
        args: &[&str],
        deadline: Instant,
    ) -> Result<String, CtlError> {
        let call = format!("{name} -n {} {}", self.node, args.join(" "));
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            // The CLI tools are Elixir, which warns on every call without a UTF-8 locale.
            .env("LC_ALL", "C.UTF-8")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a timeout ends the Erlang VM behind the script too.
            .process_group(0);
        if let Some(netns) = &self.netns {
            netns.enter_on_exec(&mut command);
        }
        let child = command
            .spawn()
            .map_err(|source| CtlError::Spawn { program, source })?;
        bounded(child, deadline, call)
    }
}

/// Waits for `child` until `deadline` (at least a few seconds: one call's VM start), then
/// kills its group. Its output, or why there is none.
fn bounded(
    mut child: std::process::Child,
    deadline: Instant,
    call: String,
) -> Result<String, CtlError> {
    let last = deadline.max(Instant::now() + Duration::from_secs(15));
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let readers = std::thread::spawn(move || {
        let mut out = String::new();
        let mut err = String::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_string(&mut err);
        }
        (out, err)
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < last => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                crate::server::signal_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                break None;
            }
        }
    };
    let (out, err) = readers.join().unwrap_or_default();
    match status {
        None => Err(CtlError::TimedOut { call }),
        Some(status) if status.success() => Ok(out),
        Some(status) => Err(CtlError::Failed {
            call,
            status: status.to_string(),
            said: one_line(if err.trim().is_empty() { &out } else { &err }),
        }),
    }
}

/// The JSON document in a tool's output (it may print a line of text before it).
fn json_in(said: &str) -> Option<serde_json::Value> {
    let start = said.find(['{', '['])?;
    serde_json::from_str(said[start..].trim()).ok()
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The member whose Raft state is `leader` in `quorum_status`'s JSON (a list of members,
/// each an object with `Node Name` and `Raft State`).
pub(super) fn leader_in(members: &serde_json::Value) -> Option<String> {
    members.as_array()?.iter().find_map(|m| {
        let state = m.get("Raft State")?.as_str()?;
        (state == "leader").then(|| m.get("Node Name")?.as_str().map(str::to_owned))?
    })
}

/// The node in an Erlang process id as the CLI prints it: `<broker0-ab@localhost.1.2.0>`.
/// The node of the classic queue `queue` in `list_queues name type pid`'s tab-separated
/// lines.
pub(super) fn classic_queue_node(listed: &str, queue: &str) -> Option<String> {
    listed.lines().find_map(|line| {
        let mut fields = line.trim_end().split('\t');
        let (name, kind, pid) = (fields.next()?, fields.next()?, fields.next()?);
        (name == queue && kind == "classic").then(|| node_of_pid(pid))?
    })
}

/// Queue `queue`'s count in `list_queues name messages_unacknowledged`'s tab-separated
/// output.
pub(super) fn unacknowledged_in(listed: &str, queue: &str) -> Option<u64> {
    listed.lines().find_map(|line| {
        let (name, count) = line.trim_end().split_once('\t')?;
        (name == queue).then(|| count.trim().parse().ok())?
    })
}

pub(super) fn node_of_pid(pid: &str) -> Option<String> {
    let inner = pid.strip_prefix('<')?.strip_suffix('>')?;
    let mut parts = inner.rsplitn(4, '.');
    let (_, _, _) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().map(str::to_owned)
}

/// `text` on one line, shortened: for an error message.
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
