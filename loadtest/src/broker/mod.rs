//! A private RabbitMQ broker, run as a child process of the lab or of a test.
//!
//! [`Broker::start`] runs the Debian package's `rabbitmq-server` (never a system service,
//! never the `/usr/sbin` wrappers, which switch to the `rabbitmq` user, its home and its
//! cookie) with an environment of its own, in a data directory of its own, on free
//! loopback ports, and returns once the broker completes an AMQP handshake. Nothing is
//! shared with any other broker on the machine, so tests can run several at once.
//!
//! Why each knob:
//!
//! - **Its own epmd, started first.** Every Erlang node registers with the port mapper
//!   daemon. Without one listening on `ERL_EPMD_PORT` the broker starts `epmd -daemon`
//!   itself, which detaches and outlives everything (its prelaunch does so even with
//!   `-start_epmd false`: tried). So `epmd -port P -address 127.0.0.1` is our child, and
//!   every start and restart checks that it listens before the broker is started.
//! - **Three free loopback ports** (AMQP, Erlang distribution, epmd), picked together so
//!   they differ, and given to the broker explicitly. The default ports (5672, 25672,
//!   4369) would clash with any other broker. If another process takes a port between the
//!   pick and the broker's bind, the start is tried again with fresh ports.
//! - **Loopback only.** `listeners.tcp.1 = 127.0.0.1:PORT` in `rabbitmq.conf`,
//!   `RABBITMQ_NODE_IP_ADDRESS`, `ERL_EPMD_ADDRESS` and `-kernel inet_dist_use_interface
//!   {127,0,0,1}` (without it the distribution port listens on every interface). The
//!   `guest` user may log in over loopback by default (`loopback_users.guest = true`), so
//!   no user is created and `loopback_users` is left alone.
//! - **A data directory of its own**, a temporary one removed on stop unless the caller
//!   gives one to keep: `HOME` (the Erlang cookie), `mnesia/` (queues and messages),
//!   `log/`, `rabbitmq.conf`, an empty `enabled_plugins` (no management plugin: it slows
//!   the stop to ≈ 6 s and its numbers lag) and an empty `rabbitmq-env.conf` (so
//!   `/etc/rabbitmq/rabbitmq-env.conf` is not read), the pid file, and the broker's
//!   stdout/stderr. Inherited `RABBITMQ_*` and `ERL_*` variables are removed, so the
//!   user's environment cannot redirect any of it.
//! - **The Erlang VM as our direct child.** `RABBITMQ_ALLOW_INPUT` makes the start script
//!   `exec` the VM instead of keeping a shell wrapper that forwards signals to it (and we
//!   add `-noinput` ourselves, so there is still no shell on stdin). So the child we spawn
//!   *is* `beam.smp`: the parent-death signal reaches the broker itself (a SIGKILL of the
//!   wrapper alone would leave the VM running), and we reap it ourselves, so its PID is
//!   never signalled after reuse. The VM is the leader of its own process group; the
//!   group is killed when it ends, so no helper it started survives it.
//! - **Readiness = an AMQP handshake.** The TCP listener opens a little before the boot
//!   completes, so a TCP connect alone is not enough: a `lapin` connection that opens a
//!   channel is. Each `rabbitmqctl` call would cost 1–2 s of VM start (and start an epmd
//!   daemon). Measured on the 2-core development machine: ready 3.5–6.6 s after the start
//!   with builds running beside it (load ≈ 3); 9–13 s has been seen during a heavy build.
//! - **Stop = SIGTERM** to the process group: RabbitMQ shuts down cleanly (queues and
//!   messages flushed) in ≈ 1.1 s; SIGKILL after [`STOP_GRACE`]. Then epmd, then the
//!   temporary directory. [`Drop`] does the same, best effort. If the lab itself is
//!   killed with SIGKILL, the parent-death signal still ends the broker and epmd; only the
//!   temporary directory is left (`loadtest-broker-*` in the temp dir).
//!
//! [`require_installed_or_skip`] is the one rule for tests that need a broker.

mod cluster;
mod ctl;
mod data_dir;
mod epmd;
mod erlang;
mod foreground;
mod handle;
mod install;
mod options;
mod output;
mod ports;
mod ready;
#[cfg(test)]
mod tests;

pub use cluster::{MAX_NODES, start_cluster};
pub use ctl::{Ctl, CtlError, RABBITMQ_QUEUES};
pub use data_dir::{MAX_MESSAGE_SIZE_BYTES, NODE_MEMORY_BYTES};
pub use foreground::run_foreground;
pub use handle::{Broker, Stopped};

/// A broker the lab started, shared by the run and its fault plan; `None` once stopped
/// for good. Dropped, it stops the broker too (also when the run is abandoned).
pub type SharedBroker = std::sync::Arc<std::sync::Mutex<Option<Broker>>>;

/// One broker node of a run as the lab and its fault plan share it: its host name
/// (`broker0`, …), the broker, and what the plan did to it (for the report).
#[derive(Clone)]
pub struct BrokerNode {
    pub host: String,
    pub broker: SharedBroker,
    /// Its starts by the plan: when, and how each went.
    pub restarts: std::sync::Arc<std::sync::Mutex<Vec<crate::report::CrashEvent>>>,
    /// Its SIGKILLs by the plan.
    pub kills: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl BrokerNode {
    pub fn new(index: usize, broker: Broker) -> BrokerNode {
        BrokerNode {
            host: crate::topology::Role::Broker.host(index),
            broker: std::sync::Arc::new(std::sync::Mutex::new(Some(broker))),
            restarts: Default::default(),
            kills: Default::default(),
        }
    }

    /// The tools pointed at this node, if it can answer them now: running, not paused.
    pub fn ctl(&self) -> Option<Ctl> {
        let broker = self.broker.lock().unwrap_or_else(|p| p.into_inner());
        broker
            .as_ref()
            .filter(|b| b.is_running() && !b.is_paused())
            .map(Ctl::of)
    }
}
pub use install::{Installation, require_installed_or_skip};

pub use options::{
    BrokerError, BrokerOptions, DEFAULT_READY_TIMEOUT, EPMD_PATHS, INSTALL_HINT, RABBITMQ_SERVER,
    STOP_GRACE,
};
