//! The scheduler: runs a [`FaultPlan`] against what the run deployed ([`Deployed`]),
//! from the start of the load until [`Schedule::finish`] (after the drain), and records
//! each fault as a [`FaultEvent`]. At the finish it heals what the plan left broken that
//! the end of the run needs: a paused host is resumed (so that it can stop cleanly), a
//! broker left down is started again (so that the queue can be counted).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::plan::{Action, Fault, FaultPlan, When};
use crate::broker::SharedBroker;
use crate::cluster::SharedNodes;
use crate::report::{CrashEvent, FaultEvent};
use crate::server::ServerHandle;
use crate::topology::Role;

/// What the plan can reach: the hosts the lab started, by name.
#[derive(Clone, Default)]
pub struct Deployed {
    /// The one spawned server (`api0` or `worker0`) when the run has no cluster.
    pub server: Option<(String, Arc<Mutex<ServerHandle>>)>,
    /// `api0`, `api1`, … of a scaled-out run, and how long a killed node stays down.
    pub nodes: Option<(SharedNodes, Duration)>,
    /// `broker0`, and its restarts as the report's `broker.restart_events` lists them.
    pub broker: Option<(SharedBroker, Arc<Mutex<Vec<CrashEvent>>>)>,
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
        let (ok, detail) = inject(fault.action, &fault.target, &deployed, at_s).await;
        record(&events, at_s, fault.action, &fault.target, ok, detail);
    }
}

fn record(
    events: &Mutex<Vec<FaultEvent>>,
    at_s: f64,
    action: Action,
    target: &str,
    ok: bool,
    detail: String,
) {
    let outcome = if ok { "" } else { " (not carried out)" };
    eprintln!(
        "loadtest: fault at {at_s:.1} s: {} {target}{outcome}: {detail}",
        action.as_str()
    );
    lock(events).push(FaultEvent {
        at_s,
        action: action.as_str().into(),
        target: target.into(),
        ok,
        detail,
    });
}

/// Carries out one fault; returns whether it was, and a line saying what happened.
async fn inject(action: Action, target: &str, deployed: &Deployed, at_s: f64) -> (bool, String) {
    if let Some((name, server)) = &deployed.server
        && name == target
    {
        return on_server(action, &lock(server), Duration::ZERO);
    }
    if let Some((nodes, down_for)) = &deployed.nodes {
        let nodes = lock(nodes);
        let mut named = nodes.iter().enumerate();
        if let Some((_, node)) = named.find(|(i, _)| Role::Api.host(*i) == target) {
            return on_server(action, node, *down_for);
        }
    }
    if let Some((broker, restarts)) = &deployed.broker
        && target == Role::Broker.host(0)
    {
        let (broker, restarts) = (broker.clone(), restarts.clone());
        return tokio::task::spawn_blocking(move || on_broker(action, &broker, &restarts, at_s))
            .await
            .unwrap_or_else(|e| (false, format!("the fault task failed: {e}")));
    }
    // The plan was checked against the topology before the run; this is a host that is
    // not deployed (yet), e.g. a node that failed to start.
    (false, format!("{target} is not running in this run"))
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

/// A fault on the broker (blocking: a start takes seconds).
fn on_broker(
    action: Action,
    broker: &SharedBroker,
    restarts: &Mutex<Vec<CrashEvent>>,
    at_s: f64,
) -> (bool, String) {
    let mut guard = lock(broker);
    let Some(broker) = guard.as_mut() else {
        return (false, "the broker has been stopped for good".into());
    };
    let running = broker.is_running();
    match action {
        Action::Kill => match broker.kill() {
            Ok(()) => (true, "SIGKILL; down until a start or restart".into()),
            Err(e) => (false, e.to_string()),
        },
        Action::Stop if running => {
            let graceful = broker.stop_node();
            let how = if graceful {
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
            let started = broker.restart().map(|()| broker.ready_after());
            let (ok, detail) = match started {
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
            };
            lock(restarts).push(CrashEvent {
                t_s: at_s,
                cause: format!("injected: broker {detail}"),
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

/// After the plan: resumes paused hosts and starts a broker left down, each recorded.
async fn heal(deployed: &Deployed, epoch: Instant, events: &Arc<Mutex<Vec<FaultEvent>>>) {
    let paused = |s: &ServerHandle| s.is_paused() && s.inject_pause(false);
    let at_s = || epoch.elapsed().as_secs_f64();
    let why = "end of the plan: resumed so that it can stop cleanly";
    if let Some((name, server)) = &deployed.server
        && paused(&lock(server))
    {
        record(events, at_s(), Action::Resume, name, true, why.into());
    }
    if let Some((nodes, _)) = &deployed.nodes {
        let resumed: Vec<usize> = lock(nodes)
            .iter()
            .enumerate()
            .filter(|(_, node)| paused(node))
            .map(|(i, _)| i)
            .collect();
        for i in resumed {
            record(
                events,
                at_s(),
                Action::Resume,
                &Role::Api.host(i),
                true,
                why.into(),
            );
        }
    }
    let Some((broker, restarts)) = deployed.broker.clone() else {
        return;
    };
    let events = events.clone();
    let at = at_s();
    let broker0 = Role::Broker.host(0);
    let _ = tokio::task::spawn_blocking(move || {
        let needs = lock(&broker)
            .as_ref()
            .map(|b| (b.is_running(), b.is_paused()));
        match needs {
            Some((true, true)) => {
                if let Some(b) = lock(&broker).as_ref() {
                    b.signal_node(libc::SIGCONT);
                }
                record(&events, at, Action::Resume, &broker0, true, why.into());
            }
            Some((false, _)) => {
                let (ok, detail) = on_broker(Action::Start, &broker, &restarts, at);
                let detail = format!("end of the plan, so that the queue can be counted: {detail}");
                record(&events, at, Action::Start, &broker0, ok, detail);
            }
            _ => {}
        }
    })
    .await;
}
