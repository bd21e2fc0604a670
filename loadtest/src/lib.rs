//! The spike lab: the original article's load test as a reusable tool, and more.
//!
//! It drives the real client ([`inventory::StockManager`]) against the purchasing API under
//! a closed step profile (the original's 20→500 virtual users) or an open arrival-rate
//! profile with a spike; optionally starts the API itself confined to a CPU quota and a
//! memory limit (a cgroup standing in for the original's 1 vCPU / 2 GB VM), samples its
//! memory and CPU, restarts it when it crashes; records every request; then reads the
//! orders file back with the persistence crate's parser and reconciles every item code:
//! acknowledged and persisted, lost, ghost, duplicate, unexpected. It reports live
//! progress, a summary table, `report.json`, `requests.csv` and a self-contained
//! `report.html`, and can fail a CI job on thresholds.
//!
//! Modules: [`profile`] (load shapes and their schedules), [`runner`] (drives the load),
//! [`record`] (one row per request, streamed to CSV), [`stats`] (aggregation), [`reconcile`],
//! [`confine`] (cgroups), [`server`] (spawning and supervising the API), [`broker`] (a
//! private RabbitMQ as a child process), [`messaging`] (the queue's depth, the drain, the
//! still-queued rule), [`e2e`] (tailing the orders file for end-to-end latency), [`network`] (hosts in
//! network namespaces of their own, and network faults),
//! [`report`], [`threshold`], [`cli`], [`prerequisite`] (the rule for tests whose
//! prerequisite is missing).

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod balancer;
pub mod broker;
pub(crate) mod child;
pub mod cli;
pub mod cluster;
pub mod compare;
pub mod confine;
pub mod e2e;
pub mod faults;
pub mod lab;
pub mod messaging;
pub mod network;
pub mod prerequisite;
pub mod profile;
pub mod progress;
pub mod reconcile;
pub mod record;
/// The report (data model and rendering): the `lab-report` crate.
pub use lab_report as report;
pub mod runner;
pub mod server;
pub mod stats;
pub mod styles;
pub mod threshold;
/// What a run deploys, as data: the `lab-topology` crate.
pub use lab_topology as topology;
