//! Hosts with a network between them (`--network`): every host of the topology in a
//! network namespace of its own, with one address on a lab network, so that the faults
//! distributed systems are built around can happen — a peer that is alive but
//! unreachable, a lossy link, a thin one.
//!
//! The shape, all of it inside namespaces the lab creates (nothing is added to the
//! machine's own network namespace, not even for a moment):
//!
//! ```text
//!   rsl-PID-hub:     bridge br0 ── v-api0 ── v-client ── v-broker0 …   (no address)
//!                                    │          │           │
//!   rsl-PID-api0:    eth0 10.200.0.2 ┘          │           │
//!   rsl-PID-client:  eth0 10.200.0.3 ───────────┘           │
//!   rsl-PID-broker0: eth0 10.200.0.4 ───────────────────────┘
//! ```
//!
//! Each host namespace has its own loopback too (up), so what a host runs for itself
//! alone (RabbitMQ's epmd and Erlang distribution) stays on its own 127.0.0.1.
//!
//! - **Processes** join their host's namespace before they execute
//!   ([`Netns::enter_on_exec`]); the lab itself moves into the `client` host's namespace
//!   before its runtime starts ([`Netns::enter_this_thread`]: threads started later
//!   inherit it), so the generator's connections leave from the client's address.
//! - **Faults** are iptables rules inside the hosts' namespaces (see [`faults`]): a
//!   partition DROPs, on each side, what arrives from the other (a connection just goes
//!   quiet — no RST, exactly what a cut cable or a dead switch port looks like); loss
//!   DROPs a random share of what arrives; a thin link is a `tbf` qdisc on both ends of the
//!   host's veth pair. This kernel has no `netem`, so added delay is refused where it is
//!   missing ([`netem_available`]).
//! - **Cleanup**: dropping the [`Network`] deletes every namespace it made, and with them
//!   every interface, address, route and rule in them. A lab killed with SIGKILL cannot
//!   clean up; the next `--network` run removes what such a run left (namespaces named
//!   after a process that no longer exists, [`sweep_stale`]). To check by hand:
//!   `ip netns list` shows no `rsl-` namespace.

mod address;
mod cmd;
pub mod faults;
mod lab_net;
mod link;
mod netns;

pub use address::{Cidr, LinkRate};
pub use cmd::{NETWORK_REQUIREMENTS, NetworkError};
pub use lab_net::{NAMESPACE_PREFIX, Network, NetworkOptions, sweep_stale};
pub use link::HostLink;
pub use netns::Netns;

/// Checks, before anything starts, that this machine can give hosts networks of their
/// own: root, `ip`, `iptables` and `tc`. One line saying what is missing.
pub fn check_prerequisites() -> Result<(), NetworkError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(NetworkError::Missing(format!(
            "loadtest is not running as root; {NETWORK_REQUIREMENTS}"
        )));
    }
    for program in [cmd::IP, cmd::IPTABLES, cmd::IPTABLES_RESTORE, cmd::TC] {
        cmd::locate(program)?;
    }
    Ok(())
}

/// Whether the kernel has the `netem` qdisc (added delay): asked of the kernel in a
/// scratch namespace's loopback, which is removed again.
pub fn netem_available() -> Result<bool, NetworkError> {
    let scratch = format!("{NAMESPACE_PREFIX}{}-netem-probe", std::process::id());
    cmd::ip(&["netns", "add", &scratch])?;
    let probe = cmd::run(
        cmd::IP,
        &[
            "netns",
            "exec",
            &scratch,
            cmd::TC,
            "qdisc",
            "add",
            "dev",
            "lo",
            "root",
            "netem",
            "delay",
            "1ms",
        ],
    );
    let _ = cmd::ip(&["netns", "del", &scratch]);
    match probe {
        Ok(_) => Ok(true),
        Err(NetworkError::Command { stderr, .. }) if stderr.contains("unknown") => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
