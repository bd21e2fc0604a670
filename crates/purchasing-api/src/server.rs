//! Starting, serving and stopping: the lifecycle of the process. Connections are served
//! by the protected accept loop both services share ([`purchasing_service::listener`]:
//! header timeout, connection cap, open-files limit raised, bounded graceful shutdown),
//! with `--header-timeout-ms`, `--max-connections` and `--shutdown-timeout-ms`. On
//! SIGTERM, orders whose work has started still finish writing before the process exits
//! (the runtime waits for its blocking pool), so every order that was acknowledged — and
//! any that was about to be — is in the file.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use purchasing_persistence::{PurchaseOrderStore, Workload};
use purchasing_service::listener::{self, ConnectionLimits};
use purchasing_service::shutdown::Shutdown;

use crate::admission::{Adaptive, AdmissionLimits};
use crate::app::app;
use crate::config::{AdmissionSettings, Config, InFlightLimit, MaxInFlight, ProtectionSettings};
use crate::limits::{self, Environment, MAX_AUTO_IN_FLIGHT, Sizing, SizingInputs};
use crate::state::{AppState, Protections};

/// Runs the server described by `config` until SIGINT or SIGTERM, on a tokio runtime of
/// its own: with `--prioritize-work` its threads run at a lower CPU priority than the
/// orders' work (see [`crate::priority`]); the calling thread keeps its priority until
/// the order threads' spawner exists.
pub fn run(config: Config) -> anyhow::Result<()> {
    let prioritize = config
        .protections()
        .is_ok_and(|settings| settings.prioritize_work);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("purchasing-api")
        .on_thread_start(move || {
            if prioritize {
                crate::priority::lower_current_thread();
            }
        })
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = Shutdown::listen().context("cannot listen for SIGINT and SIGTERM")?;
        serve(config, stop_accepting(shutdown)).await
    })?;
    drop(runtime);
    tracing::info!("stopped");
    Ok(())
}

/// Opens the store, binds, prints `listening on http://ADDR` on stdout, and serves
/// until `shutdown` completes; then stops accepting and lets requests in progress finish,
/// within `--shutdown-timeout-ms`.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = config.protections()?;
    // The limits this process runs under, read once, and only when an `auto` setting
    // needs them (the faithful server reads nothing).
    let auto_admission = settings
        .admission
        .is_some_and(|a| !matches!(a.max_in_flight, InFlightLimit::Fixed(_)));
    let environment =
        (auto_admission || settings.fills == MaxInFlight::Auto).then(Environment::discover);
    // Open the orders file first: a server that cannot write orders must not start and
    // then fail every request.
    let store = open_store(&config, &settings, environment.as_ref())?;
    // Under admission control the connections get a memory budget too (see
    // `connection_cap`); the faithful server, as the original, has none.
    let connection_memory = settings.admission.is_some().then(|| {
        environment
            .as_ref()
            .map_or_else(|| Environment::discover().memory.value, |e| e.memory.value)
    });
    let protections = resolve(&config, &settings, environment).await?;
    let listener = listener::bind(
        config.bind,
        "",
        "is another purchasing-api running? Stop it or choose another --bind",
    )
    .await?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    log_ready(&config, &settings, &protections, addr);
    listener::announce(addr)?;

    // Created here, on the thread that called `run`, before it lowers its priority: the
    // order threads keep this priority (see `crate::work_pool`).
    let state = AppState::with_protections(Arc::new(store), &protections);
    let work = state.work.clone();
    let limits = ConnectionLimits {
        header_timeout: config.header_timeout(),
        max_connections: listener::connection_cap(config.max_connections, connection_memory),
        shutdown_timeout: config.shutdown_timeout(),
    };
    if protections.prioritize_work {
        // This thread accepts connections: control path.
        crate::priority::lower_current_thread();
    }
    if let Some(agent_addr) = config.haproxy_agent_bind {
        spawn_agent(agent_addr, &state, limits.max_connections).await?;
    }
    listener::accept_loop(listener, app(state), limits, shutdown).await;
    // Every order that started — acknowledged, or about to be, or abandoned by its client
    // — reaches the file before the process exits.
    let waiting = tokio::task::spawn_blocking(move || work.wait_idle());
    if waiting.await.is_err() {
        tracing::error!("could not wait for the orders in progress");
    }
    Ok(())
}

/// Opens the orders file (and with idempotency its journal), the fill gate sized as the
/// flags say, and reports what opening repaired.
fn open_store(
    config: &Config,
    settings: &ProtectionSettings,
    environment: Option<&Environment>,
) -> anyhow::Result<PurchaseOrderStore> {
    let mut options = settings.store;
    options.max_concurrent_fills = match settings.fills {
        MaxInFlight::Off => None,
        MaxInFlight::Fixed(n) => Some(n),
        // (`adaptive` is refused for the fills when the flags are read.)
        MaxInFlight::Auto | MaxInFlight::Adaptive => Some(purchasing_service::auto_fill_gate(
            environment.expect("discovered for an auto setting"),
        )),
    };
    purchasing_service::open_store(&config.store, options)
}

/// The start-up line of the log: where the server listens and what it was told to do.
fn log_ready(
    config: &Config,
    settings: &ProtectionSettings,
    protections: &Protections,
    addr: std::net::SocketAddr,
) {
    tracing::info!(
        %addr,
        orders_file = %config.store.orders_file.display(),
        alloc_chars = config.store.alloc_chars,
        delay_ms = config.store.delay_ms,
        release_early = config.store.release_early,
        max_blocking_threads = config.max_blocking_threads,
        max_in_flight = protections.admission.map(|a| a.max_in_flight),
        queue = protections.admission.map(|a| a.queue),
        queue_timeout_ms = protections.admission.map(|a| a.queue_timeout.as_millis() as u64),
        max_request_ms = protections.max_request.map(|d| d.as_millis() as u64),
        idempotency = settings.store.idempotency,
        durable = settings.store.durable,
        "purchasing API ready"
    );
}

/// Answers HAProxy's agent check on `addr` with the orders this node admits now (the
/// admission limit, else the connection cap).
async fn spawn_agent(
    addr: std::net::SocketAddr,
    state: &AppState,
    cap: usize,
) -> anyhow::Result<()> {
    let agent = crate::agent::bind(addr).await?;
    let admission = state.admission.clone();
    tokio::spawn(crate::agent::serve(agent, move || {
        admission.as_ref().map_or(cap, |a| a.current_limit())
    }));
    Ok(())
}

/// Turns the protection flags into numbers. Measures only when a protection needs it, so
/// the faithful configuration starts exactly as before: without a calibration allocation.
/// `environment` is `Some` whenever `--max-in-flight auto` is in effect.
async fn resolve(
    config: &Config,
    settings: &ProtectionSettings,
    environment: Option<Environment>,
) -> anyhow::Result<Protections> {
    let mut protections = Protections {
        max_request: settings.max_request,
        idempotency: settings.store.idempotency,
        prioritize_work: settings.prioritize_work,
        work_threads: Some(config.max_blocking_threads),
        body_timeouts: config.body_timeouts(),
        ..Protections::default()
    };
    if !settings.needs_work_estimate() {
        return Ok(protections);
    }
    let calibration = calibrate(config.workload()).await?;
    protections.work_estimate = Some(calibration.work_estimate);
    if let Some(admission) = settings.admission {
        let (limits, sizing) = admission_limits(config, admission, environment, &calibration)?;
        protections.admission = Some(limits);
        protections.sizing = sizing;
    }
    Ok(protections)
}

/// What one order costs here, measured once at start-up.
struct Calibration {
    workload: Workload,
    /// Resident memory before any order (and before the calibration allocates).
    baseline_rss: u64,
    /// Time to allocate and fill one order's string.
    alloc_time: Duration,
    /// `delay + alloc_time`: what a deadline must leave room for.
    work_estimate: Duration,
}

/// Measures the baseline memory and times one allocation, on the blocking pool (reading
/// /proc and allocating block).
async fn calibrate(workload: Workload) -> anyhow::Result<Calibration> {
    let (baseline_rss, alloc_time) = tokio::task::spawn_blocking(move || {
        // The baseline is measured before the calibration allocates anything.
        let baseline_rss = limits::resident_memory_bytes().unwrap_or(0);
        let alloc_time = limits::calibrate_alloc_time(workload.alloc_chars);
        (baseline_rss, alloc_time)
    })
    .await
    .context("cannot measure the process's limits")?;
    let work_estimate = workload.delay + alloc_time;
    tracing::info!(
        alloc_chars = workload.alloc_chars,
        alloc_ms = alloc_time.as_secs_f64() * 1e3,
        delay_ms = workload.delay.as_millis() as u64,
        work_estimate_ms = work_estimate.as_secs_f64() * 1e3,
        "calibrated the cost of one order"
    );
    Ok(Calibration {
        workload,
        baseline_rss,
        alloc_time,
        work_estimate,
    })
}

/// Admission control's numbers: a fixed limit as given, or `auto`/`adaptive` sized from
/// the limits and the calibration; the queue as long as the most slots there can be.
fn admission_limits(
    config: &Config,
    admission: AdmissionSettings,
    environment: Option<Environment>,
    calibration: &Calibration,
) -> anyhow::Result<(AdmissionLimits, Option<Sizing>)> {
    let (max_in_flight, adaptive, sizing) = match admission.max_in_flight {
        InFlightLimit::Fixed(n) => (n, None, None),
        limit @ (InFlightLimit::Auto | InFlightLimit::Adaptive) => {
            let environment = environment.expect("discovered for --max-in-flight auto or adaptive");
            let sizing = size_auto(config, &environment, calibration)?;
            let adaptive =
                (limit == InFlightLimit::Adaptive).then(|| adaptive(&sizing, calibration));
            (sizing.max_in_flight, adaptive, Some(sizing))
        }
    };
    // A queue as long as the most slots there can be.
    let most = adaptive.map_or(max_in_flight, |a| a.cap);
    let limits = AdmissionLimits {
        max_in_flight,
        queue: admission.queue.unwrap_or(most),
        queue_timeout: admission.queue_timeout,
        adaptive,
    };
    Ok((limits, sizing))
}

/// `--max-in-flight auto`: the capacity rule over this process's limits, logged with its
/// inputs. Fails when not one order fits.
fn size_auto(
    config: &Config,
    environment: &Environment,
    calibration: &Calibration,
) -> anyhow::Result<Sizing> {
    let Calibration {
        workload,
        baseline_rss,
        alloc_time,
        ..
    } = *calibration;
    let sizing = limits::size(SizingInputs {
        memory_limit_bytes: environment.memory.value,
        baseline_rss_bytes: baseline_rss,
        alloc_chars: workload.alloc_chars,
        cpus: environment.cpus.value,
        delay: workload.delay,
        alloc_time,
        // More admitted orders than blocking threads would only queue in the pool,
        // holding their slot without running.
        cap: MAX_AUTO_IN_FLIGHT.min(config.max_blocking_threads),
    });
    tracing::info!(
        max_in_flight = sizing.max_in_flight,
        n_mem = sizing.n_mem,
        n_cpu = sizing.n_cpu,
        cap = sizing.inputs.cap,
        memory_limit_bytes = environment.memory.value,
        memory_limit_source = %environment.memory.source,
        baseline_rss_bytes = baseline_rss,
        memory_share = limits::MEMORY_SHARE,
        cpus = environment.cpus.value,
        cpus_source = %environment.cpus.source,
        "sized admission control: max_in_flight = max(1, min(n_mem, n_cpu, cap)), \
         n_mem = floor((memory_share * memory_limit - baseline_rss) / alloc_chars), \
         n_cpu = floor(0.7 * cpus * (delay + alloc) / alloc)"
    );
    if let Some(why) = sizing.nothing_fits() {
        anyhow::bail!("{why} (memory limit from {})", environment.memory.source);
    }
    Ok(sizing)
}

/// `--max-in-flight adaptive`: the auto size is only the start; the memory bound is the
/// ceiling.
fn adaptive(sizing: &Sizing, calibration: &Calibration) -> Adaptive {
    let cap = sizing.n_mem.min(sizing.inputs.cap).max(1);
    tracing::info!(
        start = sizing.max_in_flight,
        cap,
        fill_estimate_ms = calibration.alloc_time.as_secs_f64() * 1e3,
        "admission limit adapts to the wait for the CPU, between 1 and the orders that fit \
         in memory"
    );
    Adaptive {
        cap,
        fill_estimate: calibration.alloc_time,
    }
}

/// Completes once `shutdown` is requested (SIGINT or SIGTERM, see
/// [`purchasing_service::shutdown`]). The server then stops accepting connections and
/// lets in-flight requests finish, within the shutdown timeout.
async fn stop_accepting(shutdown: Shutdown) {
    shutdown.wait().await;
    tracing::info!("shutting down: no new connections; finishing orders in progress");
}
