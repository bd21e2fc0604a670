//! What a lab run is asked to do: [`LabOptions`] and its [`Target`].

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::{ExternalBalancer, ScaleOut};
use crate::messaging::MessagingOptions;
use crate::runner::Plan;
use crate::server::ServerSpec;
use crate::threshold::Threshold;

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A server that is already running (perhaps in a real VM). Reconciliation needs its
    /// orders file to be readable here.
    Remote { orders_file: Option<PathBuf> },
    /// The lab starts `purchasing-api` itself; `spec.orders_file` is reconciled.
    Spawn(ServerSpec),
}

#[derive(Debug, Clone)]
pub struct LabOptions {
    /// `blog`, `step` or `rate` (for the report).
    pub profile_name: String,
    pub plan: Plan,
    pub target: Target,
    pub out_dir: PathBuf,
    pub thresholds: Vec<Threshold>,
    /// Remote targets: the orders file must stay unchanged this long before it is read.
    pub settle: Duration,
    /// `--transport amqp`: publish to a queue the worker consumes. `None`: HTTP calls.
    pub messaging: Option<MessagingOptions>,
    /// `--instances K`: K spawned nodes behind a real HAProxy ([`crate::cluster`]).
    pub scale_out: Option<ScaleOut>,
    /// `--balancer-url`: a balancer the user runs (a remote target), watched through its
    /// stats socket when given.
    pub external_balancer: Option<ExternalBalancer>,
}
