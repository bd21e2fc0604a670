//! The broker's data directory: temporary or kept (`--keep-data`), its node name and PID file.

use std::fs::{self};
use std::path::{Path, PathBuf};

use super::options::BrokerError;

/// Where a broker keeps everything.
pub(super) enum DataDir {
    /// Removed on stop.
    Temporary(tempfile::TempDir),
    /// Given by the caller; kept.
    Kept(PathBuf),
    /// Already removed or handed back.
    Gone,
}

/// File in a kept data directory that remembers the node name: RabbitMQ stores its data
/// under the node's name, so a broker started later on the directory must use the same.
pub(super) const NODE_NAME_FILE: &str = "node-name";

/// The lab broker's Raft write-ahead log limit (RabbitMQ's default is 512 MiB): 64 MB
/// holds many thousands of small orders between log rolls and keeps a quorum queue's
/// memory well inside a broker's cgroup.
const WAL_MAX_SIZE_BYTES: u64 = 64_000_000;

/// The memory one lab broker node is sized for, as a small VM would have: an idle node
/// (≈ 130 MB) plus about three times its write-ahead log, with room for a queue of small
/// orders. RabbitMQ is told this is all the memory there is
/// (`total_memory_available_override_value`), so its memory alarm — publishers blocked at
/// 40 % of it — fires against the node's budget rather than the whole host's.
pub const NODE_MEMORY_BYTES: u64 = 1 << 30;

/// The largest message the lab broker accepts (RabbitMQ's default is 128 MiB). An order is
/// an item code of at most 100 characters; a 100 MB body from a careless publisher would
/// otherwise be pushed into every worker's prefetch window before the worker can refuse
/// it. Past this size the broker closes the publisher's channel (406 PRECONDITION_FAILED).
pub const MAX_MESSAGE_SIZE_BYTES: u64 = 65_536;

/// The AMQP heartbeat timeout a lab-network broker proposes (`--network`), seconds. A peer
/// that goes quiet is declared gone after about this long, the connection closed and what
/// it held requeued. RabbitMQ's guide suggests 5–20 s; 10 s notices a partition well
/// within a run while a CPU-starved worker (one throttled CPU) still answers in time. On
/// loopback the default (60 s) stays: a dead process is seen at once by its reset.
pub const NETWORK_HEARTBEAT_S: u32 = 10;

impl DataDir {
    pub(super) fn prepare(keep: Option<&Path>) -> Result<DataDir, BrokerError> {
        let dir = match keep {
            None => DataDir::Temporary(
                tempfile::Builder::new()
                    .prefix("loadtest-broker-")
                    .tempdir()
                    .map_err(|e| {
                        BrokerError::Setup(format!(
                            "cannot create a temporary directory for the broker in {}: {e}; \
                             check that it is writable and has space (or set TMPDIR)",
                            std::env::temp_dir().display()
                        ))
                    })?,
            ),
            Some(path) => {
                fs::create_dir_all(path).map_err(|e| {
                    BrokerError::Setup(format!(
                        "cannot create the broker's data directory {}: {e}; check the path and its permissions",
                        path.display()
                    ))
                })?;
                let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
                if let Some(pid) = read_pid_file(&path.join(PID_FILE))
                    && fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim() == "beam.smp")
                {
                    return Err(BrokerError::Setup(format!(
                        "the data directory {} is in use by a running RabbitMQ (pid {pid}); stop it or choose another directory",
                        path.display()
                    )));
                }
                DataDir::Kept(path)
            }
        };
        for sub in [dir.mnesia_dir(), dir.log_dir()] {
            fs::create_dir_all(&sub).map_err(|e| {
                BrokerError::Setup(format!(
                    "cannot create {}: {e}; check the data directory's permissions",
                    sub.display()
                ))
            })?;
        }
        Ok(dir)
    }

    pub(super) fn path(&self) -> &Path {
        match self {
            DataDir::Temporary(t) => t.path(),
            DataDir::Kept(p) => p,
            DataDir::Gone => Path::new(""),
        }
    }

    pub(super) fn mnesia_dir(&self) -> PathBuf {
        self.path().join("mnesia")
    }
    pub(super) fn log_dir(&self) -> PathBuf {
        self.path().join("log")
    }
    pub(super) fn config_file(&self) -> PathBuf {
        self.path().join("rabbitmq.conf")
    }
    pub(super) fn plugins_file(&self) -> PathBuf {
        self.path().join("enabled_plugins")
    }
    pub(super) fn conf_env_file(&self) -> PathBuf {
        self.path().join("rabbitmq-env.conf")
    }
    pub(super) fn pid_file(&self) -> PathBuf {
        self.path().join(PID_FILE)
    }

    /// `loadtest-<random>@localhost`: new for a temporary directory, remembered in a kept
    /// one. Unique, so two brokers never confuse each other's data or logs.
    pub(super) fn node_name(&self) -> Result<String, BrokerError> {
        let fresh = || {
            let id = uuid::Uuid::new_v4().simple().to_string();
            format!("loadtest-{}@localhost", &id[..12])
        };
        let DataDir::Kept(path) = self else {
            return Ok(fresh());
        };
        let file = path.join(NODE_NAME_FILE);
        if let Ok(name) = fs::read_to_string(&file) {
            let name = name.trim();
            if !name.is_empty() {
                return Ok(name.to_string());
            }
        }
        let name = fresh();
        fs::write(&file, format!("{name}\n"))
            .map_err(|e| BrokerError::Setup(format!("cannot write {}: {e}", file.display())))?;
        Ok(name)
    }

    /// Writes the configuration for this start (the AMQP port may change between starts
    /// of a kept directory).
    pub(super) fn write_config(
        &self,
        ip: std::net::Ipv4Addr,
        amqp_port: u16,
        cluster: bool,
    ) -> Result<(), String> {
        // RabbitMQ lets `guest` in from loopback only. On the lab network (`--network`) the
        // clients come from the other hosts' addresses, inside namespaces only the lab
        // made, so the broker lets guest in from there too.
        let network = if ip.is_loopback() {
            String::new()
        } else {
            format!(
                "# On the lab's own network (--network): clients come from the other hosts.\n\
                 loopback_users = none\n\
                 # A partition is silent, and only heartbeats notice it: propose {NETWORK_HEARTBEAT_S} s\n\
                 # (RabbitMQ's 60 s default takes a minute to see a cut peer).\n\
                 heartbeat = {NETWORK_HEARTBEAT_S}\n"
            )
        };
        // A cluster node cut off from the majority pauses itself (closes its listeners) until
        // the partition heals: its clients fail over to a majority node instead of waiting
        // on a node whose quorum queues cannot confirm anything. RabbitMQ's default
        // (`ignore`) would keep the minority accepting publishes it can never confirm.
        // Nodes notice a silent peer after `net_ticktime` (Erlang's distribution
        // heartbeat; 60 s by default). Until then the majority waits on it: a queue declare
        // on a surviving node blocked for the whole of a 40 s partition, so no client could
        // fail over. 15 s, as RabbitMQ's own Jepsen tests use, lets the majority go on and
        // the minority pause within about 20 s.
        let partitions = if cluster {
            "# A node cut off from the majority pauses until the partition heals.\n\
             cluster_partition_handling = pause_minority\n\
             # Peers notice a silent node within about 15-20 s (default 60 s).\n\
             net_ticktime = 15\n"
        } else {
            ""
        };
        let files = [
            (
                self.config_file(),
                format!(
                    "# Written by loadtest for one private broker: AMQP on loopback only\n\
                     # (or on its host's address on the lab network).\n\
                     listeners.tcp.1 = {ip}:{amqp_port}\n\
                     {network}\
                     {partitions}\
                     # The reliable queues are quorum queues, whose Raft write-ahead log\n\
                     # defaults to 512 MiB and wants about three times that in memory;\n\
                     # a lab broker holds small messages and may run in a small cgroup.\n\
                     raft.wal_max_size_bytes = {WAL_MAX_SIZE_BYTES}\n\
                     # The node's memory budget, for its memory alarm (not the host's).\n\
                     total_memory_available_override_value = {NODE_MEMORY_BYTES}\n\
                     # Orders are item codes; nothing legitimate comes near this.\n\
                     max_message_size = {MAX_MESSAGE_SIZE_BYTES}\n"
                ),
            ),
            // No plugins (the management plugin slows stops and is not needed).
            (self.plugins_file(), String::new()),
            // Empty, so /etc/rabbitmq/rabbitmq-env.conf is not read instead.
            (self.conf_env_file(), String::new()),
        ];
        for (path, contents) in files {
            fs::write(&path, contents).map_err(|e| {
                format!(
                    "cannot write {}: {e}; check the data directory's permissions and free space",
                    path.display()
                )
            })?;
        }
        let _ = fs::remove_file(self.pid_file()); // a stale one would name another process
        Ok(())
    }

    /// Removes a temporary directory (a kept one stays).
    pub(super) fn remove(self) -> Result<(), BrokerError> {
        match self {
            DataDir::Temporary(dir) => {
                let path = dir.path().to_path_buf();
                dir.close().map_err(|e| {
                    BrokerError::Cleanup(format!(
                        "the broker stopped, but its temporary directory {} could not be removed: {e}; remove it by hand",
                        path.display()
                    ))
                })
            }
            DataDir::Kept(_) | DataDir::Gone => Ok(()),
        }
    }
}

/// The pid file's name in the data directory.
pub(super) const PID_FILE: &str = "rabbitmq.pid";

pub(super) fn read_pid_file(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The process group of `pid` (field 5 of /proc/PID/stat), if it exists.
pub(super) fn process_group_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // After ')': field 3 (state) is index 0, so field 5 (pgrp) is index 2.
    after.split_whitespace().nth(2)?.parse().ok()
}
