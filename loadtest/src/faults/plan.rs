//! The plan's data: [`Fault`] (`WHEN:ACTION:TARGET`), [`FaultPlan`] and its check
//! against the run's topology.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::topology::{Role, Topology};

/// The shortest repeat of `every=`: a fault more often than this would leave the host no
/// time to come back, and the plan would measure nothing but the lab's own signals.
pub const MIN_EVERY: Duration = Duration::from_millis(100);

/// When a fault happens, relative to the start of the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    At(Duration),
    Every(Duration),
}

/// The target that names no host but the broker node leading the orders queue when the
/// fault fires (asked of the cluster then: leaders move when nodes fail).
pub const BROKER_LEADER: &str = "broker-leader";

/// What a fault does to its host (see the `faults` module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    Stop,
    Start,
    Restart,
    Pause,
    Resume,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Kill,
        Action::Stop,
        Action::Start,
        Action::Restart,
        Action::Pause,
        Action::Resume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Resume => "resume",
        }
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown action '{s}'; the actions are {}", names.join(", "))
            })
    }
}

/// One line of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub when: When,
    pub action: Action,
    pub target: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.when {
            When::At(at) => write!(f, "{}s", at.as_secs_f64())?,
            When::Every(every) => write!(f, "every={}s", every.as_secs_f64())?,
        }
        write!(f, ":{}:{}", self.action.as_str(), self.target)
    }
}

/// Seconds as given in a plan: `20`, `20s`, `1.5s`, `500ms`.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a time; write seconds, e.g. 20, 20s or 1.5s"))?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("'{text}' is not a time of 0 s or more"))
}

impl FromStr for Fault {
    type Err = String;

    /// `WHEN:ACTION:TARGET`, e.g. `20s:kill:worker0` or `every=20s:pause:api0`.
    fn from_str(spec: &str) -> Result<Self, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let [when, action, target] = parts[..] else {
            return Err(format!(
                "'{spec}' is not WHEN:ACTION:TARGET, e.g. 20s:kill:worker0 or every=20s:pause:api0"
            ));
        };
        let when = match when.strip_prefix("every=") {
            Some(every) => {
                let every = parse_seconds(every)?;
                if every < MIN_EVERY {
                    return Err(format!(
                        "every={} is too often; at least every {} ms",
                        every.as_secs_f64(),
                        MIN_EVERY.as_millis()
                    ));
                }
                When::Every(every)
            }
            None => When::At(parse_seconds(when)?),
        };
        if target.is_empty() {
            return Err(format!("'{spec}' names no target host"));
        }
        Ok(Fault {
            when,
            action: action.parse()?,
            target: target.to_string(),
        })
    }
}

/// The run's faults, in the order given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    pub faults: Vec<Fault>,
}

impl FaultPlan {
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Whether some fault kills a supervised host (which must then be restarted).
    pub fn kills_a_server(&self, topology: &Topology) -> bool {
        self.faults.iter().any(|f| {
            f.action == Action::Kill
                && topology
                    .host(&f.target)
                    .is_some_and(|h| matches!(h.role, Role::Api | Role::Worker))
        })
    }

    /// Refuses, with one line, a fault the run cannot carry out: a host the topology lacks,
    /// one the lab does not start, or a role that takes no faults yet.
    pub fn check(&self, topology: &Topology) -> Result<(), PlanError> {
        for fault in &self.faults {
            let fault_spec = fault.to_string();
            // Resolved when it fires; checked as the broker it will be one of.
            let target = match fault.target.as_str() {
                BROKER_LEADER => Role::Broker.host(0),
                name => name.to_string(),
            };
            let Some(host) = topology.host(&target) else {
                return Err(PlanError::NoSuchHost {
                    fault: fault_spec,
                    host: fault.target.clone(),
                    hosts: topology.names(),
                });
            };
            if !host.spawned {
                return Err(PlanError::NotStarted {
                    fault: fault_spec,
                    host: host.name.clone(),
                });
            }
            if matches!(host.role, Role::Balancer | Role::Client) {
                return Err(PlanError::NoFaultsFor {
                    fault: fault_spec,
                    role: host.role,
                });
            }
        }
        Ok(())
    }
}

/// Why a fault plan does not fit the run's topology (a usage error, before anything starts).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("--fault {fault}: this run has no host '{host}'; its hosts are {hosts}")]
    NoSuchHost {
        fault: String,
        host: String,
        hosts: String,
    },
    #[error(
        "--fault {fault}: the lab did not start {host} (it is yours), so it cannot inject faults into it"
    )]
    NotStarted { fault: String, host: String },
    #[error("--fault {fault}: {}", no_faults_reason(*.role))]
    NoFaultsFor { fault: String, role: Role },
}

/// What to aim at instead of a host of `role`, which takes no faults.
fn no_faults_reason(role: Role) -> &'static str {
    match role {
        Role::Balancer => {
            "faults on the balancer are not supported yet; aim at an API node (api0, …)"
        }
        Role::Client => "the client is the lab itself; aim at a host of the system under test",
        Role::Api | Role::Worker | Role::Broker => "this host takes no faults",
    }
}
