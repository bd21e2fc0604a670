//! `loadtest run`'s arguments checked together and turned into the lab's options.

use std::path::PathBuf;
use std::time::Duration;

use inventory::BaseUrl;

use crate::cluster::{self, ExternalBalancer, ScaleOut};
use crate::confine::{Limits, parse_memory_size};
use crate::faults::{self, Action, Fault, FaultPlan, When};
use crate::lab::{LabOptions, SAMPLE_EVERY, Target};
use crate::messaging::{BrokerSource, MessagingOptions};
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

impl RunArgs {
    /// Checks the combination of flags and turns them into lab options.
    ///
    /// clap refuses what it can express (see [`RunArgs`]' `conflicts_with`, `requires`,
    /// `required_if_eq`). What is left here depends on another flag's *value* (`--profile`,
    /// `--transport`, `--delivery`) or on the flag's own value, which clap's rules cannot
    /// say: it can make a flag need or exclude another flag's presence, or require one when
    /// another has a value, but not refuse a flag because another has a value (`--rate` with
    /// `--profile step`, `--spawn-broker` with the default `--transport http`).
    pub fn into_options(self) -> Result<LabOptions, String> {
        let faults = self.fault_plan()?;
        let (profile_name, load, iterations, duration) = match self.profile {
            ProfileKind::Blog => {
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
                if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                    return Err(format!(
                        "--profile blog is the original test's numbers and takes no {flag}; \
                         use --profile step (or rate) to choose your own"
                    ));
                }
                let load = Load::Closed {
                    profile: StepProfile::BLOG,
                    think: Duration::ZERO,
                };
                ("blog", load, Some(BLOG_ITERATIONS), Some(BLOG_DURATION))
            }
            ProfileKind::Step => {
                if self.rate.is_some() || self.spike_rate.is_some() {
                    return Err("--rate and --spike-* belong to --profile rate".into());
                }
                let b = StepProfile::BLOG;
                let profile = StepProfile {
                    initial_users: self.users.unwrap_or(b.initial_users),
                    step_users: self.step_users.unwrap_or(b.step_users),
                    step_duration: match self.step_seconds {
                        Some(s) => seconds(s, "--step-seconds")?,
                        None => b.step_duration,
                    },
                    max_users: self
                        .max_users
                        .unwrap_or(b.max_users.max(self.users.unwrap_or(0))),
                };
                profile.validate()?;
                let duration = self
                    .duration
                    .map(|d| seconds(d, "--duration"))
                    .transpose()?;
                if self.iterations.is_none() && duration.is_none() {
                    return Err("a step profile needs --iterations or --duration so that the run ends by itself".into());
                }
                let think = Duration::from_millis(self.think_ms.unwrap_or(0));
                (
                    "step",
                    Load::Closed { profile, think },
                    self.iterations,
                    duration,
                )
            }
            ProfileKind::Rate => {
                let step_flags = [self.users, self.step_users, self.max_users, self.think_ms];
                if step_flags.iter().any(Option::is_some) || self.step_seconds.is_some() {
                    return Err(
                        "--users, --step-*, --max-users and --think-ms belong to --profile step"
                            .into(),
                    );
                }
                // clap requires --rate and --duration with --profile rate, and all three
                // --spike-* flags or none; these `Err`s only answer options built in code.
                let rate = self
                    .rate
                    .ok_or("--profile rate needs --rate (arrivals per second)")?;
                let duration = seconds(
                    self.duration
                        .ok_or("--profile rate needs --duration (seconds)")?,
                    "--duration",
                )?;
                let spike =
                    match (self.spike_rate, self.spike_start, self.spike_seconds) {
                        (None, None, None) => None,
                        (Some(rate), Some(start), Some(length)) => Some(Spike {
                            rate,
                            start: Duration::try_from_secs_f64(start)
                                .map_err(|_| format!("--spike-start must be ≥ 0, not {start}"))?,
                            duration: seconds(length, "--spike-seconds")?,
                        }),
                        _ => return Err(
                            "a spike needs all of --spike-rate, --spike-start and --spike-seconds"
                                .into(),
                        ),
                    };
                let profile = RateProfile {
                    base_rate: rate,
                    spike,
                    duration,
                };
                profile.validate()?;
                ("rate", Load::Open(profile), self.iterations, Some(duration))
            }
        };

        let timeout = match self.timeout {
            Some(t) => seconds(t, "--timeout")?,
            None => inventory::DEFAULT_TIMEOUT,
        };
        let settle = seconds(self.settle, "--settle")?;

        let messaging = self.messaging_options()?;
        // The blog profile is the original's test, whose client opened a connection per
        // call — and so do the faithful HTTP and messaging clients here. The reliable
        // publisher is this project's design, not the original's: one connection reused,
        // confirms per publish (a connection per publish costs ~6 round trips: measured on
        // the blog profile, publish p99 150 ms with a connection each, 19 ms reused).
        let reliable = messaging
            .as_ref()
            .is_some_and(|m| m.delivery == inventory::DeliveryMode::Reliable);
        let new_connection_per_request = match self.connection {
            Some(c) => c == Connection::New,
            None => self.profile == ProfileKind::Blog && !reliable,
        };
        let scale_out = match self.instances {
            None => None,
            Some(_) if messaging.is_some() => {
                return Err("--instances scales the RPC half (nodes behind HAProxy); the messaging half scales by more workers on one queue: drop --instances or --transport amqp".into());
            }
            Some(k) => Some(ScaleOut {
                instances: k as usize,
                down_for: match self.instance_down_for {
                    Some(s) => Duration::try_from_secs_f64(s)
                        .map_err(|_| format!("--instance-down-for must be ≥ 0 seconds, not {s}"))?,
                    None => cluster::DEFAULT_DOWN_FOR,
                },
            }),
        };
        if self.balancer_url.is_some() && messaging.is_some() {
            return Err("--balancer-url is an HTTP balancer in front of your API nodes; with --transport amqp the broker is given by --amqp-url".into());
        }
        let external_balancer = self.balancer_url.clone().map(|url| ExternalBalancer {
            url,
            stats_socket: self.balancer_stats_socket.clone(),
            backend: self
                .balancer_backend
                .clone()
                .unwrap_or_else(|| crate::balancer::BACKEND.to_string()),
        });
        let out_dir = self.out.unwrap_or_else(|| default_out(""));
        let kind = if messaging.is_some() {
            SutKind::Worker
        } else {
            SutKind::Api
        };

        let (target, base_url) = if self.spawn_server {
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
            let spec = ServerSpec {
                kind,
                binary: match self.server_bin {
                    Some(path) => path,
                    None => find_server_binary(kind.binary_name())?,
                },
                orders_file: self
                    .orders_file
                    .unwrap_or_else(|| out_dir.join("PurchaseOrders.txt")),
                lab_args: Vec::new(),
                args: self.server_args,
                limits: limits(self.cpus, self.memory.as_deref())?,
                // Set below when the fault plan kills a server.
                restart_on_crash: self.restart_on_crash,
                sample_every: SAMPLE_EVERY,
                log_file: Some(out_dir.join("server.log")),
                core_slot: 0,
            };
            // The real address is known once the server runs; a placeholder until then.
            (
                Target::Spawn(spec),
                BaseUrl::parse("http://127.0.0.1:1").map_err(|e| e.to_string())?,
            )
        } else {
            let base_url = if messaging.is_some() {
                if self.url.is_some() {
                    return Err("--url is the API's address; with --transport amqp the broker is given by --amqp-url or --spawn-broker".into());
                }
                // Unused: publishes go to the broker, the worker is yours to run.
                BaseUrl::parse("http://127.0.0.1:1").map_err(|e| e.to_string())?
            } else {
                let (url, flag) = match (self.url, &self.balancer_url) {
                    (Some(url), _) => (url, "--url"),
                    (None, Some(url)) => (url.clone(), "--balancer-url"),
                    (None, None) => return Err(
                        "say where the API is: --url URL for a running server, or --spawn-server to start one".into(),
                    ),
                };
                BaseUrl::parse(&url).map_err(|e| format!("{flag}: {e}"))?
            };
            (
                Target::Remote {
                    orders_file: self.orders_file,
                },
                base_url,
            )
        };

        LabOptions {
            profile_name: profile_name.into(),
            plan: Plan {
                load,
                iterations,
                duration,
                client: ClientConfig {
                    base_url,
                    timeout,
                    new_connection_per_request,
                    retries: self.retries.unwrap_or(0),
                    amqp: None,
                },
            },
            target,
            out_dir,
            thresholds: self.fail_on,
            settle,
            messaging,
            scale_out,
            external_balancer,
            faults: FaultPlan::default(),
        }
        .with_faults(faults)
        .map_err(|e| e.to_string())
    }

    /// The fault plan: the older fault flags (aliases), then `--fault`, then `--faults`.
    pub(super) fn fault_plan(&self) -> Result<FaultPlan, String> {
        let mut plan = FaultPlan::default();
        let alias = |value: f64, flag: &str, when: fn(Duration) -> When| {
            let time = seconds(value, flag)?;
            if matches!(when(time), When::Every(_)) && time < faults::MIN_EVERY {
                return Err(format!(
                    "{flag} must be at least {} s, not {value}",
                    faults::MIN_EVERY.as_secs_f64()
                ));
            }
            Ok::<_, String>(when(time))
        };
        let mut push = |when: When, action: Action, target: String| {
            plan.faults.push(Fault {
                when,
                action,
                target,
            })
        };
        if let Some(at) = self.kill_instance_at {
            push(
                alias(at, "--kill-instance-at", When::At)?,
                Action::Kill,
                Role::Api.host(0),
            );
        }
        if let Some(every) = self.kill_worker_every {
            push(
                alias(every, "--kill-worker-every", When::Every)?,
                Action::Kill,
                Role::Worker.host(0),
            );
        }
        if let Some(at) = self.restart_broker_at {
            push(
                alias(at, "--restart-broker-at", When::At)?,
                Action::Restart,
                Role::Broker.host(0),
            );
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
                ("--amqp-url", self.amqp_url.is_some()),
                ("--delivery", self.delivery.is_some()),
                ("--drain-timeout", self.drain_timeout.is_some()),
                ("--kill-worker-every", self.kill_worker_every.is_some()),
                ("--restart-broker-at", self.restart_broker_at.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                return Err(format!(
                    "{flag} belongs to the messaging half: add --transport amqp"
                ));
            }
            return Ok(None);
        }
        let broker = match (&self.amqp_url, self.spawn_broker) {
            (Some(url), false) => BrokerSource::Url(
                inventory::AmqpUrl::parse(url).map_err(|e| format!("--amqp-url: {e}"))?,
            ),
            (None, true) => BrokerSource::Spawn,
            (None, false) => {
                return Err("--transport amqp needs a broker: add --spawn-broker (a private one for the run) or --amqp-url URL (yours)".into());
            }
            // clap refuses both (conflicts_with); this answers options built in code.
            (Some(_), true) => return Err("give --spawn-broker or --amqp-url, not both".into()),
        };
        let delivery = self.delivery.unwrap_or_default();
        if delivery == inventory::DeliveryMode::Faithful && self.retries.is_some_and(|r| r > 0) {
            return Err("--retries over AMQP needs --delivery reliable: a faithful message has no message id, so a repeated publish could order twice".into());
        }
        Ok(Some(MessagingOptions {
            broker,
            delivery,
            drain_timeout: seconds(
                self.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT_S),
                "--drain-timeout",
            )?,
        }))
    }
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
