//! One fault plan for every kind of fault: `--fault WHEN:ACTION:TARGET` (repeatable) and
//! `--faults FILE` (TOML, for long schedules), checked against the run's
//! [`Topology`] before anything starts, and run by one scheduler ([`schedule`]) that
//! records every fault it injects as an event in `report.json` (`faults[]`).
//!
//! WHEN is seconds after the load starts (`20`, `20s`, `1.5s`) or `every=20s` (again and
//! again, through the load and the drain). TARGET is a host the lab started. The actions:
//!
//! | action | what the host sees |
//! |---|---|
//! | `kill` | SIGKILL. A supervised process (API node, worker) comes back after its down time; the broker stays down until a `start` or `restart` |
//! | `stop` / `start` | a clean stop (SIGTERM: the orders in progress finish), and a start again |
//! | `restart` | a clean stop followed by a start |
//! | `pause` / `resume` | SIGSTOP and SIGCONT: a frozen VM or a long GC pause — alive, connected, answering nothing |
//!
//! The older fault flags are aliases that build the same plan: `--kill-worker-every S` is
//! `every=S:kill:worker0`, `--restart-broker-at S` is `S:restart:broker0`,
//! `--kill-instance-at S` is `S:kill:api0` (down for `--instance-down-for`).

mod file;
mod plan;
pub mod schedule;

pub use file::parse_file;
pub use plan::{
    Action, Amount, Fault, FaultPlan, MIN_EVERY, PlanError, When, network_targets, parse_seconds,
};

#[cfg(test)]
mod tests;
