//! `loadtest run`'s arguments checked together and turned into the lab's options.

use std::path::{Path, PathBuf};
use std::time::Duration;

use inventory::BaseUrl;

use crate::cluster::{self, ExternalBalancer, ScaleOut};
use crate::confine::{Limits, parse_memory_size};
use crate::faults::{self, Action, Fault, FaultPlan, When};
use crate::lab::{LabNetwork, LabOptions, SAMPLE_EVERY, Target};
use crate::messaging::{BrokerSource, MessagingOptions};
use crate::network::NetworkOptions;
use crate::profile::{RateProfile, Spike, StepProfile};
use crate::runner::{ClientConfig, Load, Plan};
use crate::server::{ServerSpec, SutKind};
use crate::topology::Role;

use super::args::{Connection, DEFAULT_DRAIN_TIMEOUT_S, ProfileKind, RunArgs, Transport};
use super::common::default_out;

/// The original test's 1000 iterations.
pub const BLOG_ITERATIONS: u64 = 1000;
/// The original test's run-duration ceiling.
pub const BLOG_DURATION: Duration = Duration::from_secs(60);

pub(super) fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{flag} must be a number of seconds greater than 0, not {value}"))
}

pub(super) fn limits(cpus: Option<f64>, memory: Option<&str>) -> Result<Limits, String> {
    if let Some(c) = cpus
        && !(c.is_finite() && c > 0.0)
    {
        return Err(format!("--cpus must be greater than 0, not {c}"));
    }
    let memory_bytes = memory
        .map(parse_memory_size)
        .transpose()
        .map_err(|e| format!("--memory: {e}"))?;
    let limits = Limits { cpus, memory_bytes };
    // Checked here too, so a limit that cannot run anything is refused before the lab
    // starts anything.
    limits.validate().map_err(|e| e.to_string())?;
    Ok(limits)
}

/// What `--profile` and its flags make of the load: its name in the report, the load, and
/// the two caps.
struct Shape {
    name: &'static str,
    load: Load,
    iterations: Option<u64>,
    duration: Option<Duration>,
}

impl RunArgs {
    /// Checks the combination of flags and turns them into lab options, one concern at a
    /// time: the fault plan, the load, the messaging half, the scale-out, the target.
    ///
    /// clap refuses what it can express (see [`RunArgs`]). What is left here depends on
    /// another flag's *value* (`--profile`, `--transport`, `--delivery`), which clap's
    /// rules cannot say: it can make a flag need or exclude another flag's presence, or
    /// require one when another has a value, but not refuse a flag because another has a
    /// value (`--rate` with `--profile step`, `--spawn-broker` with the default
    /// `--transport http`). A few checks clap also makes are repeated where the types
    /// force a choice; they answer only run arguments built in code (`compare`, `sweep`).
    pub fn into_options(self) -> Result<LabOptions, String> {
        let faults = self.fault_plan()?;
        let shape = self.shape()?;
        let messaging = self.messaging_options()?;
        let scale_out = self.scale_out(messaging.is_some())?;
        let external_balancer = self.external_balancer(messaging.is_some())?;
        let network = self.network_options()?;
        let out_dir = self.out.clone().unwrap_or_else(|| default_out(""));
        let (target, base_url) = self.target(&out_dir, messaging.is_some())?;
        let client = ClientConfig {
            base_url,
            timeout: self.timeout.unwrap_or(inventory::DEFAULT_TIMEOUT),
            new_connection_per_request: self.new_connection_per_request(messaging.as_ref()),
            retries: self.retries.unwrap_or(0),
            amqp: None,
        };
        LabOptions {
            profile_name: shape.name.into(),
            plan: Plan {
                load: shape.load,
                iterations: shape.iterations,
                duration: shape.duration,
                client,
            },
            target,
            out_dir,
            thresholds: self.fail_on,
            settle: self.settle,
            messaging,
            scale_out,
            external_balancer,
            faults: FaultPlan::default(),
            network,
        }
        .with_faults(faults)
        .map_err(|e| e.to_string())
    }

    /// `--network`, `--network-cidr`, `--link-rate`, `--link-delay` (the network itself is
    /// built just before the run).
    fn network_options(&self) -> Result<Option<LabNetwork>, String> {
        if !self.network {
            return Ok(None);
        }
        let mut options = NetworkOptions::default();
        options.cidr = self.network_cidr.unwrap_or(options.cidr);
        options.link_rate = self.link_rate;
        options.link_delay = self.link_delay;
        Ok(Some(LabNetwork {
            options,
            built: None,
        }))
    }

    /// The load of `--profile` from its own flags, refusing another profile's flags.
    fn shape(&self) -> Result<Shape, String> {
        match self.profile {
            ProfileKind::Blog => self.blog_shape(),
            ProfileKind::Step => self.step_shape(),
            ProfileKind::Rate => self.rate_shape(),
        }
    }

    /// `--profile blog`: the original's numbers, none of them chosen by a flag.
    fn blog_shape(&self) -> Result<Shape, String> {
        let given = [
            ("--users", self.users.is_some()),
            ("--step-users", self.step_users.is_some()),
            ("--step-seconds", self.step_seconds.is_some()),
            ("--max-users", self.max_users.is_some()),
            ("--think-ms", self.think_ms.is_some()),
            ("--iterations", self.iterations.is_some()),
            ("--duration", self.duration.is_some()),
            ("--timeout", self.timeout.is_some()),
            ("--rate", self.rate.is_some()),
        ];
        if let Some(flag) = first_given(&given) {
            return Err(format!(
                "--profile blog is the original test's numbers and takes no {flag}; \
                 use --profile step (or rate) to choose your own"
            ));
        }
        Ok(Shape {
            name: "blog",
            load: Load::Closed {
                profile: StepProfile::BLOG,
                think: Duration::ZERO,
            },
            iterations: Some(BLOG_ITERATIONS),
            duration: Some(BLOG_DURATION),
        })
    }

    /// `--profile step`: the blog's steps unless a flag says otherwise; it must end.
    fn step_shape(&self) -> Result<Shape, String> {
        if self.rate.is_some() || self.spike_rate.is_some() {
            return Err("--rate and --spike-* belong to --profile rate".into());
        }
        let b = StepProfile::BLOG;
        let profile = StepProfile {
            initial_users: self.users.unwrap_or(b.initial_users),
            step_users: self.step_users.unwrap_or(b.step_users),
            step_duration: self.step_seconds.unwrap_or(b.step_duration),
            max_users: self
                .max_users
                .unwrap_or(b.max_users.max(self.users.unwrap_or(0))),
        };
        profile.validate()?;
        if self.iterations.is_none() && self.duration.is_none() {
            return Err(
                "a step profile needs --iterations or --duration so that the run ends by itself"
                    .into(),
            );
        }
        let think = Duration::from_millis(self.think_ms.unwrap_or(0));
        Ok(Shape {
            name: "step",
            load: Load::Closed { profile, think },
            iterations: self.iterations,
            duration: self.duration,
        })
    }

    /// `--profile rate`: `--rate` for `--duration`, and a spike when all its flags say one.
    fn rate_shape(&self) -> Result<Shape, String> {
        let step_flags = [self.users, self.step_users, self.max_users, self.think_ms];
        if step_flags.iter().any(Option::is_some) || self.step_seconds.is_some() {
            return Err(
                "--users, --step-*, --max-users and --think-ms belong to --profile step".into(),
            );
        }
        // clap requires --rate and --duration with --profile rate, and all three --spike-*
        // flags or none; these `Err`s only answer options built in code.
        let rate = self
            .rate
            .ok_or("--profile rate needs --rate (arrivals per second)")?;
        let duration = self
            .duration
            .ok_or("--profile rate needs --duration (seconds)")?;
        let spike = match (self.spike_rate, self.spike_start, self.spike_seconds) {
            (None, None, None) => None,
            (Some(rate), Some(start), Some(duration)) => Some(Spike {
                rate,
                start,
                duration,
            }),
            _ => {
                return Err(
                    "a spike needs all of --spike-rate, --spike-start and --spike-seconds".into(),
                );
            }
        };
        let profile = RateProfile {
            base_rate: rate,
            spike,
            duration,
        };
        profile.validate()?;
        Ok(Shape {
            name: "rate",
            load: Load::Open(profile),
            iterations: self.iterations,
            duration: Some(duration),
        })
    }

    /// `--connection`, else the profile's habit. The blog profile is the original's test,
    /// whose client opened a connection per call — and so do the faithful HTTP and
    /// messaging clients here. The reliable publisher is this project's design, not the
    /// original's: one connection reused, confirms per publish (a connection per publish
    /// costs ~6 round trips: measured on the blog profile, publish p99 150 ms with a
    /// connection each, 19 ms reused).
    fn new_connection_per_request(&self, messaging: Option<&MessagingOptions>) -> bool {
        let reliable = messaging.is_some_and(|m| m.delivery == inventory::DeliveryMode::Reliable);
        match self.connection {
            Some(c) => c == Connection::New,
            None => self.profile == ProfileKind::Blog && !reliable,
        }
    }

    /// `--instances K` and the down time of a killed node; refused for the messaging half.
    fn scale_out(&self, messaging: bool) -> Result<Option<ScaleOut>, String> {
        let Some(k) = self.instances else {
            return Ok(None);
        };
        if messaging {
            return Err("--instances scales the RPC half (nodes behind HAProxy); the messaging half scales by more workers on one queue: drop --instances or --transport amqp".into());
        }
        Ok(Some(ScaleOut {
            instances: k as usize,
            down_for: self.instance_down_for.unwrap_or(cluster::DEFAULT_DOWN_FOR),
        }))
    }

    /// `--balancer-url` and how to watch it; refused for the messaging half.
    fn external_balancer(&self, messaging: bool) -> Result<Option<ExternalBalancer>, String> {
        if self.balancer_url.is_some() && messaging {
            return Err("--balancer-url is an HTTP balancer in front of your API nodes; with --transport amqp the broker is given by --amqp-url".into());
        }
        Ok(self.balancer_url.clone().map(|url| ExternalBalancer {
            url,
            stats_socket: self.balancer_stats_socket.clone(),
            backend: self
                .balancer_backend
                .clone()
                .unwrap_or_else(|| crate::balancer::BACKEND.to_string()),
        }))
    }

    /// What the load goes to: a server the lab spawns (its address known once it runs),
    /// or yours at `--url` / `--balancer-url` (none over AMQP: the worker is yours).
    fn target(&self, out_dir: &Path, messaging: bool) -> Result<(Target, BaseUrl), String> {
        // Until the spawned server runs, and over AMQP (publishes go to the broker).
        let placeholder = || BaseUrl::parse("http://127.0.0.1:1").map_err(|e| e.to_string());
        let kind = if messaging {
            SutKind::Worker
        } else {
            SutKind::Api
        };
        if self.spawn_server {
            return Ok((
                Target::Spawn(Box::new(self.server_spec(kind, out_dir)?)),
                placeholder()?,
            ));
        }
        let base_url = match (&self.url, &self.balancer_url) {
            (Some(_), _) if messaging => {
                return Err("--url is the API's address; with --transport amqp the broker is given by --amqp-url or --spawn-broker".into());
            }
            _ if messaging => placeholder()?,
            (Some(url), _) => BaseUrl::parse(url).map_err(|e| format!("--url: {e}"))?,
            (None, Some(url)) => BaseUrl::parse(url).map_err(|e| format!("--balancer-url: {e}"))?,
            (None, None) => {
                return Err("say where the API is: --url URL for a running server, or --spawn-server to start one".into());
            }
        };
        let orders_file = self.orders_file.clone();
        Ok((Target::Remote { orders_file }, base_url))
    }

    /// The server (or worker) the lab spawns, refusing server arguments the lab sets.
    fn server_spec(&self, kind: SutKind, out_dir: &Path) -> Result<ServerSpec, String> {
        for arg in &self.server_args {
            if kind
                .lab_owned_flags()
                .iter()
                .any(|f| arg == f || arg.starts_with(&format!("{f}=")))
            {
                return Err(format!(
                    "{arg} is set by the lab for a spawned server; use loadtest's --orders-file to choose the file (and --spawn-broker/--amqp-url, --delivery for the worker)"
                ));
            }
        }
        Ok(ServerSpec {
            kind,
            binary: match &self.server_bin {
                Some(path) => path.clone(),
                None => find_server_binary(kind.binary_name())?,
            },
            orders_file: self
                .orders_file
                .clone()
                .unwrap_or_else(|| out_dir.join("PurchaseOrders.txt")),
            lab_args: Vec::new(),
            args: self.server_args.clone(),
            limits: limits(self.cpus, self.memory.as_deref())?,
            // Set by the fault plan when it kills a server.
            restart_on_crash: self.restart_on_crash,
            sample_every: SAMPLE_EVERY,
            log_file: Some(out_dir.join("server.log")),
            core_slot: 0,
            link: None,
        })
    }

    /// The fault plan: the older fault flags (aliases), then `--fault`, then `--faults`.
    pub(super) fn fault_plan(&self) -> Result<FaultPlan, String> {
        let mut plan = FaultPlan::default();
        // Their times were checked by clap (`--kill-worker-every` at least MIN_EVERY).
        let aliases = [
            (self.kill_instance_at.map(When::At), Action::Kill, Role::Api),
            (
                self.kill_worker_every.map(When::Every),
                Action::Kill,
                Role::Worker,
            ),
            (
                self.restart_broker_at.map(When::At),
                Action::Restart,
                Role::Broker,
            ),
        ];
        for (when, action, role) in aliases {
            if let Some(when) = when {
                plan.faults.push(Fault {
                    when,
                    action,
                    target: role.host(0),
                    amount: None,
                });
            }
        }
        plan.faults.extend(self.faults.iter().cloned());
        if let Some(path) = &self.faults_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--faults: cannot read {}: {e}", path.display()))?;
            let file = faults::parse_file(&path.display().to_string(), &text)?;
            plan.faults.extend(file.faults);
        }
        Ok(plan)
    }

    /// The messaging options of `--transport amqp`, checked; `None` for HTTP (where the
    /// messaging flags are refused).
    pub(super) fn messaging_options(&self) -> Result<Option<MessagingOptions>, String> {
        if self.transport == Transport::Http {
            let given = [
                ("--spawn-broker", self.spawn_broker),
                ("--amqp-url", !self.amqp_url.is_empty()),
                ("--delivery", self.delivery.is_some()),
                ("--drain-timeout", self.drain_timeout.is_some()),
                ("--workers", self.workers.is_some()),
                ("--kill-worker-every", self.kill_worker_every.is_some()),
                ("--restart-broker-at", self.restart_broker_at.is_some()),
            ];
            if let Some(flag) = first_given(&given) {
                return Err(format!(
                    "{flag} belongs to the messaging half: add --transport amqp"
                ));
            }
            return Ok(None);
        }
        // clap requires one of the two with --transport amqp and refuses both; these
        // `Err`s answer options built in code.
        let broker = match (
            inventory::AmqpUrls::concat(&self.amqp_url),
            self.spawn_broker,
        ) {
            (Some(urls), false) => BrokerSource::Url(urls),
            (None, true) => BrokerSource::Spawn {
                nodes: self.broker_nodes.into(),
            },
            (None, false) => {
                return Err("--transport amqp needs a broker: add --spawn-broker (a private one for the run) or --amqp-url URL (yours)".into());
            }
            (Some(_), true) => return Err("give --spawn-broker or --amqp-url, not both".into()),
        };
        let delivery = self.delivery.unwrap_or_default();
        if delivery == inventory::DeliveryMode::Faithful && self.retries.is_some_and(|r| r > 0) {
            return Err("--retries over AMQP needs --delivery reliable: a faithful message has no message id, so a repeated publish could order twice".into());
        }
        Ok(Some(MessagingOptions {
            broker,
            delivery,
            workers: self.workers.map_or(1, |k| k as usize),
            drain_timeout: self
                .drain_timeout
                .unwrap_or(Duration::from_secs_f64(DEFAULT_DRAIN_TIMEOUT_S)),
        }))
    }
}

/// The first flag given of `(flag, given)`: the one a refusal names.
fn first_given<'a>(flags: &[(&'a str, bool)]) -> Option<&'a str> {
    flags
        .iter()
        .find(|(_, given)| *given)
        .map(|(flag, _)| *flag)
}

/// `purchasing-api` (or `purchasing-worker`) next to this executable (both are built into
/// the same target directory), else on PATH.
pub(super) fn find_server_binary(name: &str) -> Result<PathBuf, String> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)));
    if let Some(path) = beside.as_ref().filter(|p| p.is_file()) {
        return Ok(path.clone());
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }) {
        return Ok(path);
    }
    Err(format!(
        "cannot find the {name} binary next to loadtest ({}) or on PATH; build it with \
         `cargo build --release` (the whole workspace) or pass --server-bin",
        beside.map(|p| p.display().to_string()).unwrap_or_default()
    ))
}
