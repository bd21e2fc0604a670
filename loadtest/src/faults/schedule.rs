//! The scheduler: runs a [`FaultPlan`] against what the run deployed ([`Deployed`]),
//! from the start of the load until [`Schedule::finish`] (after the drain), and records
//! each fault as a [`FaultEvent`]. At the finish it heals what the plan left broken that
//! the end of the run needs: a paused host is resumed (so that it can stop cleanly), a
//! broker left down is started again (so that the queue can be counted).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::plan::{Action, Amount, BROKER_LEADER, Fault, FaultPlan, When, network_targets};
use crate::broker::BrokerNode;
use crate::cluster::SharedNodes;
use crate::network::Network;
use crate::report::{CrashEvent, FaultEvent};
use crate::server::ServerHandle;
use crate::topology::{Role, Topology};

/// What the plan can reach: the hosts the lab started, by name.
#[derive(Clone, Default)]
pub struct Deployed {
    /// The spawned servers by host name when the run has no cluster: `api0`, or
    /// `worker0`, `worker1`, … (`--workers K`).
    pub servers: Vec<(String, Arc<Mutex<ServerHandle>>)>,
    /// `api0`, `api1`, … of a scaled-out run, and how long a killed node stays down.
    pub nodes: Option<(SharedNodes, Duration)>,
    /// `broker0`, `broker1`, … that the lab started.
    pub brokers: Vec<BrokerNode>,
    /// The node the last `broker-leader` fault hit: a later `start` or `resume` of
    /// `broker-leader` brings that one back (the cluster has elected another leader
    /// meanwhile).
    pub last_leader: Arc<Mutex<Option<BrokerNode>>>,
    /// `--network`: the lab network the network faults act on, and the topology that
    /// names their targets (`broker` is every broker node).
    pub network: Option<(Arc<Network>, Topology)>,
}

/// A running plan; [`Schedule::finish`] stops it. Dropped (the run abandoned), it only
/// stops: the hosts' own teardown ends paused processes too.
pub struct Schedule {
    task: Option<tokio::task::JoinHandle<()>>,
    events: Arc<Mutex<Vec<FaultEvent>>>,
    deployed: Deployed,
    epoch: Instant,
}

impl Schedule {
    /// Starts running `plan`, with times relative to `epoch` (the start of the load).
    pub fn start(plan: &FaultPlan, deployed: Deployed, epoch: Instant) -> Schedule {
        let events: Arc<Mutex<Vec<FaultEvent>>> = Arc::default();
        let task = (!plan.is_empty()).then(|| {
            tokio::spawn(run(
                plan.faults.clone(),
                deployed.clone(),
                epoch,
                events.clone(),
            ))
        });
        Schedule {
            task,
            events,
            deployed,
            epoch,
        }
    }

    /// Stops the plan, heals (see the module docs), and returns every fault injected.
    pub async fn finish(mut self) -> Vec<FaultEvent> {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
            heal(&self.deployed, self.epoch, &self.events).await;
        }
        std::mem::take(&mut *lock(&self.events))
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The plan's loop: the next fault due, injected, recorded; `every=` ones again later.
async fn run(
    faults: Vec<Fault>,
    deployed: Deployed,
    epoch: Instant,
    events: Arc<Mutex<Vec<FaultEvent>>>,
) {
    // (when it is next due, the fault's index): ties go in the order given.
    let mut due: Vec<(Duration, usize)> = faults
        .iter()
        .enumerate()
        .map(|(i, f)| match f.when {
            When::At(at) | When::Every(at) => (at, i),
        })
        .collect();
    while let Some(next) = due
        .iter()
        .enumerate()
        .min_by_key(|(_, d)| **d)
        .map(|(p, _)| p)
    {
        let (at, i) = due[next];
        tokio::time::sleep_until(epoch + at).await;
        let fault = &faults[i];
        match fault.when {
            When::Every(every) => due[next].0 = at + every,
            When::At(_) => {
                due.remove(next);
            }
        }
        let at_s = epoch.elapsed().as_secs_f64();
        let done = if fault.action.is_network() {
            on_network(fault, &deployed).await
        } else {
            inject(fault.action, &fault.target, &deployed, at_s).await
        };
        record(&events, at_s, fault.action, &fault.target, done);
    }
}

/// How one fault went: whether it was carried out, a line saying what happened, and the
/// host it hit when the target was resolved as it fired ([`BROKER_LEADER`]).
struct Done {
    ok: bool,
    detail: String,
    host: Option<String>,
}

impl From<(bool, String)> for Done {
    fn from((ok, detail): (bool, String)) -> Done {
        Done {
            ok,
            detail,
            host: None,
        }
    }
}

fn record(events: &Mutex<Vec<FaultEvent>>, at_s: f64, action: Action, target: &str, done: Done) {
    // `heal` names no host: it acts on the whole network.
    let target = if target.is_empty() { "network" } else { target };
    let outcome = if done.ok { "" } else { " (not carried out)" };
    let hit = done
        .host
        .as_ref()
        .map(|h| format!(" ({h})"))
        .unwrap_or_default();
    eprintln!(
        "loadtest: fault at {at_s:.1} s: {} {target}{hit}{outcome}: {}",
        action.as_str(),
        done.detail
    );

    lock(events).push(FaultEvent {
        at_s,
        action: action.as_str().into(),
        target: target.into(),
        host: done.host,
        ok: done.ok,
        detail: done.detail,
    });
}

/// Carries out one fault; returns whether it was, and a line saying what happened.
async fn inject(action: Action, target: &str, deployed: &Deployed, at_s: f64) -> Done {
    if let Some((_, server)) = deployed.servers.iter().find(|(name, _)| name == target) {
        return on_server(action, &lock(server), Duration::ZERO).into();
    }
    if let Some((nodes, down_for)) = &deployed.nodes {
        let nodes = lock(nodes);
        let mut named = nodes.iter().enumerate();
        if let Some((_, node)) = named.find(|(i, _)| Role::Api.host(*i) == target) {
            return on_server(action, node, *down_for).into();
        }
    }
    if target == BROKER_LEADER || deployed.brokers.iter().any(|n| n.host == target) {
        let (brokers, target) = (deployed.brokers.clone(), target.to_string());
        let last_leader = deployed.last_leader.clone();
        return tokio::task::spawn_blocking(move || {
            let node = match target.as_str() {
                BROKER_LEADER => leader_for(action, &brokers, &last_leader)?,
                name => (brokers.iter().find(|n| n.host == name).cloned())
                    .ok_or_else(|| format!("{name} is not running in this run"))?,
            };
            let mut done = Done::from(on_broker(action, &node, at_s));
            done.host = (target == BROKER_LEADER).then(|| node.host.clone());
            Ok(done)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the fault task failed: {e}")))
        .unwrap_or_else(|why| (false, why).into());
    }
    // The plan was checked against the topology before the run; this is a host that is
    // not deployed (yet), e.g. a node that failed to start.
    (false, format!("{target} is not running in this run")).into()
}

/// A network fault (blocking: it runs `iptables` and `tc`).
async fn on_network(fault: &Fault, deployed: &Deployed) -> Done {
    let Some((network, topology)) = deployed.network.clone() else {
        return (false, "this run has no lab network (--network)".to_string()).into();
    };
    let fault = fault.clone();
    tokio::task::spawn_blocking(move || {
        let (a, b) = network_targets(&fault, &topology).map_err(|e| e.to_string())?;
        let host = a.first().cloned().unwrap_or_default();
        let done = match (fault.action, fault.amount) {
            (Action::Partition, _) => network.partition(&a, &b),
            (Action::Isolate, _) => network.isolate(&host),
            (Action::Loss, Some(Amount::Share(p))) => network.loss(&host, p),
            (Action::Rate, Some(Amount::Rate(r))) => network.rate(&host, r),
            (Action::Heal, _) => network.heal(),
            _ => return Err(format!("{fault} is not a network fault this lab knows")),
        };
        done.map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("the fault task failed: {e}")))
    .map_or_else(|why| (false, why), |detail| (true, detail))
    .into()
}

/// The node `broker-leader` means for `action`: the one the last such fault hit for a
/// `start` or `resume`, else the one leading now (remembered for those).
fn leader_for(
    action: Action,
    brokers: &[BrokerNode],
    last: &Mutex<Option<BrokerNode>>,
) -> Result<BrokerNode, String> {
    if matches!(action, Action::Start | Action::Resume) {
        return lock(last).clone().ok_or_else(|| {
            format!(
                "no earlier fault hit {BROKER_LEADER}, so there is none to {}",
                action.as_str()
            )
        });
    }
    let node = leading_node(brokers)?;
    *lock(last) = Some(node.clone());
    Ok(node)
}

/// The node that leads the orders queue now (a classic queue: the node it lives on), as
/// the first node that answers says.
fn leading_node(brokers: &[BrokerNode]) -> Result<BrokerNode, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut why = "no broker node is running".to_string();
    for node in brokers {
        let Some(ctl) = node.ctl() else { continue };
        match ctl.queue_leader(wire_contract::amqp::QUEUE, deadline) {
            Ok(leader) => {
                let is_leader = |n: &&BrokerNode| {
                    lock(&n.broker)
                        .as_ref()
                        .is_some_and(|b| b.node_name() == leader)
                };
                return brokers.iter().find(is_leader).cloned().ok_or_else(|| {
                    format!("the orders queue is led by {leader}, which this run did not start")
                });
            }
            Err(e) => why = e.to_string(),
        }
    }
    Err(format!(
        "cannot tell which node leads the orders queue: {why}"
    ))
}

/// A fault on a supervised server (an API node or the worker).
fn on_server(action: Action, server: &ServerHandle, down_for: Duration) -> (bool, String) {
    let not_running = || (false, "it was not running".to_string());
    match action {
        Action::Kill if server.inject_kill_for(down_for) => (
            true,
            if down_for.is_zero() {
                "SIGKILL; its supervisor starts it again".to_string()
            } else {
                format!(
                    "SIGKILL; its supervisor starts it again after {:.1} s down",
                    down_for.as_secs_f64()
                )
            },
        ),
        Action::Stop if server.inject_stop() => (
            true,
            "SIGTERM: it finishes its orders in progress and stays down until a start".into(),
        ),
        Action::Start if server.inject_start() => (true, "its supervisor starts it again".into()),
        Action::Start => (false, "it was not stopped by the plan".into()),
        Action::Restart if server.inject_stop() => {
            server.inject_start();
            (true, "SIGTERM, then its supervisor starts it again".into())
        }
        Action::Pause if server.inject_pause(true) => (
            true,
            "SIGSTOP: alive, answering nothing until a resume".into(),
        ),
        Action::Resume if server.inject_pause(false) => (true, "SIGCONT".into()),
        _ => not_running(),
    }
}

/// A fault on a broker node (blocking: a start takes seconds).
fn on_broker(action: Action, node: &BrokerNode, at_s: f64) -> (bool, String) {
    let mut guard = lock(&node.broker);
    let Some(broker) = guard.as_mut() else {
        return (false, "the broker has been stopped for good".into());
    };
    let running = broker.is_running();
    match action {
        Action::Kill => match broker.kill() {
            Ok(()) => {
                node.kills
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (true, "SIGKILL; down until a start or restart".into())
            }
            Err(e) => (false, e.to_string()),
        },
        Action::Stop if running => {
            let how = if broker.stop_node() {
                "cleanly"
            } else {
                "with SIGKILL after the grace"
            };
            (
                true,
                format!("stopped {how}; down until a start or restart"),
            )
        }
        Action::Start if running => (false, "it was running".into()),
        Action::Start | Action::Restart => {
            let (ok, detail) = start_again(action, broker);
            lock(&node.restarts).push(CrashEvent {
                t_s: at_s,
                cause: format!("injected: {} {detail}", node.host),
                oom_killed: false,
            });
            (ok, detail)
        }
        Action::Pause if running && broker.signal_node(libc::SIGSTOP) => (
            true,
            "SIGSTOP: alive, answering nothing until a resume".into(),
        ),
        Action::Resume if running && broker.signal_node(libc::SIGCONT) => (true, "SIGCONT".into()),
        _ => (false, "it was not running".into()),
    }
}

/// `start` or `restart` of a broker node, on its data directory and port.
fn start_again(action: Action, broker: &mut crate::broker::Broker) -> (bool, String) {
    match broker.restart().map(|()| broker.ready_after()) {
        Ok(ready) => (
            true,
            format!(
                "{} on the same data directory and port (ready after {:.1} s)",
                if action == Action::Start {
                    "started again"
                } else {
                    "restarted"
                },
                ready.as_secs_f64()
            ),
        ),
        Err(e) => (false, format!("{} failed: {e}", action.as_str())),
    }
}

/// After the plan: resumes paused hosts and starts a broker left down, each recorded.
async fn heal(deployed: &Deployed, epoch: Instant, events: &Arc<Mutex<Vec<FaultEvent>>>) {
    let paused = |s: &ServerHandle| s.is_paused() && s.inject_pause(false);
    let at_s = || epoch.elapsed().as_secs_f64();
    let why = "end of the plan: resumed so that it can stop cleanly";
    for (name, server) in &deployed.servers {
        if paused(&lock(server)) {
            let done = (true, why.to_string()).into();
            record(events, at_s(), Action::Resume, name, done);
        }
    }
    if let Some((nodes, _)) = &deployed.nodes {
        let resumed: Vec<usize> = lock(nodes)
            .iter()
            .enumerate()
            .filter(|(_, node)| paused(node))
            .map(|(i, _)| i)
            .collect();
        for i in resumed {
            let done = (true, why.to_string()).into();
            record(events, at_s(), Action::Resume, &Role::Api.host(i), done);
        }
    }
    if let Some((network, _)) = deployed.network.clone().filter(|(n, _)| n.is_faulty()) {
        let healed = tokio::task::spawn_blocking(move || network.heal()).await;
        let done = match healed {
            Ok(Ok(detail)) => (true, format!("end of the plan: {detail}")),
            Ok(Err(e)) => (false, format!("end of the plan: {e}")),
            Err(e) => (false, format!("end of the plan: the heal task failed: {e}")),
        };
        record(events, at_s(), Action::Heal, "", done.into());
    }
    let (brokers, events) = (deployed.brokers.clone(), events.clone());
    let at = at_s();
    let _ = tokio::task::spawn_blocking(move || {
        for node in &brokers {
            heal_broker(node, at, &events);
        }
    })
    .await;
}

/// Resumes a paused broker node, or starts one left down, each recorded.
fn heal_broker(node: &BrokerNode, at: f64, events: &Mutex<Vec<FaultEvent>>) {
    let why = "end of the plan: resumed so that it can stop cleanly";
    let needs = lock(&node.broker)
        .as_ref()
        .map(|b| (b.is_running(), b.is_paused()));
    match needs {
        Some((true, true)) => {
            if let Some(b) = lock(&node.broker).as_ref() {
                b.signal_node(libc::SIGCONT);
            }
            let done = (true, why.to_string()).into();
            record(events, at, Action::Resume, &node.host, done);
        }
        Some((false, _)) => {
            let (ok, detail) = on_broker(Action::Start, node, at);
            let detail = format!("end of the plan, so that the queue can be counted: {detail}");
            record(events, at, Action::Start, &node.host, (ok, detail).into());
        }
        _ => {}
    }
}
