//! The plan's data: [`Fault`] (`WHEN:ACTION:TARGET`), [`FaultPlan`] and its check
//! against the run's topology.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::network::LinkRate;
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

/// What a fault does to its host (see the `faults` module docs): the first six act on
/// processes, the rest on the network (`--network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Kill,
    Stop,
    Start,
    Restart,
    Pause,
    Resume,
    Partition,
    Isolate,
    Loss,
    Rate,
    Heal,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::Kill,
        Action::Stop,
        Action::Start,
        Action::Restart,
        Action::Pause,
        Action::Resume,
        Action::Partition,
        Action::Isolate,
        Action::Loss,
        Action::Rate,
        Action::Heal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Restart => "restart",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Partition => "partition",
            Action::Isolate => "isolate",
            Action::Loss => "loss",
            Action::Rate => "rate",
            Action::Heal => "heal",
        }
    }

    /// Whether it acts on the network (and so needs `--network`).
    pub fn is_network(self) -> bool {
        matches!(
            self,
            Action::Partition | Action::Isolate | Action::Loss | Action::Rate | Action::Heal
        )
    }
}

/// The value of a `loss` or `rate` fault: `loss:HOST:5%`, `rate:HOST:1mbit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// A share of the packets, 0 to 1 (`5%` is 0.05).
    Share(f64),
    Rate(LinkRate),
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Share(p) => write!(f, "{}%", p * 100.0),
            Amount::Rate(r) => write!(f, "{r}"),
        }
    }
}

/// `5%` (or `0.5%`, `100%`): a share of the packets.
fn parse_share(text: &str) -> Result<f64, String> {
    let percent: f64 = text
        .strip_suffix('%')
        .and_then(|n| n.trim().parse().ok())
        .filter(|p: &f64| (0.0..=100.0).contains(p))
        .ok_or_else(|| {
            format!(
                "'{text}' is not a share of packets; write a percentage from 0% to 100%, e.g. 5%"
            )
        })?;
    Ok(percent / 100.0)
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
    /// A host; for `partition`, `SIDE/SIDE` (each side hosts or roles, comma-separated);
    /// empty for `heal`.
    pub target: String,
    /// `loss`'s share, `rate`'s rate.
    pub amount: Option<Amount>,
}

impl Fault {
    /// A fault from its parts, checked for its action's shape: `heal` takes no target,
    /// `loss` and `rate` an amount, `partition` two sides.
    pub fn new(
        when: When,
        action: Action,
        target: &str,
        amount: Option<&str>,
    ) -> Result<Fault, String> {
        let amount = match (action, amount) {
            (Action::Loss, Some(a)) => Some(Amount::Share(parse_share(a)?)),
            (Action::Rate, Some(a)) => Some(Amount::Rate(a.parse()?)),
            (Action::Loss, None) => return Err("loss needs a share: loss:HOST:5%".into()),
            (Action::Rate, None) => return Err("rate needs a rate: rate:HOST:1mbit".into()),
            (_, Some(a)) => {
                return Err(format!("{} takes no value (':{a}')", action.as_str()));
            }
            (_, None) => None,
        };
        match action {
            Action::Heal if !target.is_empty() => {
                return Err(format!(
                    "heal takes no target (it undoes every network fault): write WHEN:heal, not heal:{target}"
                ));
            }
            Action::Heal => {}
            _ if target.is_empty() => {
                return Err(format!("{} names no target host", action.as_str()));
            }
            Action::Partition => {
                let sides = target
                    .split_once('/')
                    .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'));
                if sides.is_none() {
                    return Err(format!(
                        "partition:{target}: name two sides, SIDE/SIDE, e.g. partition:client/api0 or partition:broker0/broker1,broker2"
                    ));
                }
            }
            _ => {}
        }
        Ok(Fault {
            when,
            action,
            target: target.to_string(),
            amount,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.when {
            When::At(at) => write!(f, "{}s", at.as_secs_f64())?,
            When::Every(every) => write!(f, "every={}s", every.as_secs_f64())?,
        }
        write!(f, ":{}", self.action.as_str())?;
        if !self.target.is_empty() {
            write!(f, ":{}", self.target)?;
        }
        if let Some(amount) = self.amount {
            write!(f, ":{amount}")?;
        }
        Ok(())
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

    /// `WHEN:ACTION:TARGET`, e.g. `20s:kill:worker0` or `every=20s:pause:api0`; the
    /// network's `20s:partition:client/api0`, `20s:loss:client:5%`, `30s:heal`.
    fn from_str(spec: &str) -> Result<Self, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (when, action, target, amount) = match parts[..] {
            [when, action] => (when, action, "", None),
            [when, action, target] => (when, action, target, None),
            [when, action, target, amount] => (when, action, target, Some(amount)),
            _ => {
                return Err(format!(
                    "'{spec}' is not WHEN:ACTION:TARGET, e.g. 20s:kill:worker0 or every=20s:pause:api0"
                ));
            }
        };
        let action: Action = action.parse()?;
        Fault::new(parse_when(when)?, action, target, amount).map_err(|e| format!("'{spec}': {e}"))
    }
}

/// `20s` or `every=20s`.
pub fn parse_when(when: &str) -> Result<When, String> {
    Ok(match when.strip_prefix("every=") {
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
    })
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
    /// one the lab does not start, a role that takes no faults yet, or a network fault
    /// without `--network` (`network`: whether the run has one).
    pub fn check(&self, topology: &Topology, network: bool) -> Result<(), PlanError> {
        for fault in &self.faults {
            let fault_spec = fault.to_string();
            if fault.action.is_network() {
                if !network {
                    return Err(PlanError::NeedsNetwork { fault: fault_spec });
                }
                network_targets(fault, topology)?;
                continue;
            }
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

/// The hosts a network fault acts on, as two sides: `partition:A/B` gives A's and B's
/// hosts (a side is hosts or roles, comma-separated: `broker` is every broker node);
/// `isolate`, `loss` and `rate` give their one host and no other side; `heal` nothing.
pub fn network_targets(
    fault: &Fault,
    topology: &Topology,
) -> Result<(Vec<String>, Vec<String>), PlanError> {
    let side = |text: &str| -> Result<Vec<String>, PlanError> {
        let mut hosts = Vec::new();
        for item in text.split(',').map(str::trim) {
            let role = Role::ALL.into_iter().find(|r| r.as_str() == item);
            let found: Vec<String> = (topology.hosts.iter())
                .filter(|h| h.name == item || Some(h.role) == role)
                .map(|h| h.name.clone())
                .collect();
            if found.is_empty() {
                return Err(PlanError::NoSuchHost {
                    fault: fault.to_string(),
                    host: item.to_string(),
                    hosts: topology.names(),
                });
            }
            for host in found {
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
        Ok(hosts)
    };
    match fault.action {
        Action::Heal => Ok((Vec::new(), Vec::new())),
        Action::Partition => {
            let (a, b) = fault.target.split_once('/').unwrap_or((&fault.target, ""));
            let (a, b) = (side(a)?, side(b)?);
            if let Some(both) = a.iter().find(|h| b.contains(h)) {
                return Err(PlanError::BothSides {
                    fault: fault.to_string(),
                    host: both.clone(),
                });
            }
            Ok((a, b))
        }
        _ => match topology.host(&fault.target) {
            Some(host) => Ok((vec![host.name.clone()], Vec::new())),
            None => Err(PlanError::NoSuchHost {
                fault: fault.to_string(),
                host: fault.target.clone(),
                hosts: topology.names(),
            }),
        },
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
    #[error(
        "--fault {fault}: network faults need hosts with networks of their own; add --network (root)"
    )]
    NeedsNetwork { fault: String },
    #[error("--fault {fault}: {host} is on both sides of the partition")]
    BothSides { fault: String, host: String },
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
