//! Starting, serving and stopping: the lifecycle of the process.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use purchasing_persistence::PurchaseOrderStore;
use tokio::net::TcpListener;

use crate::admission::AdmissionLimits;
use crate::app::{AppState, Protections, app};
use crate::config::{Config, InFlightLimit, MaxInFlight, ProtectionSettings};
use crate::limits::{self, Environment, MAX_AUTO_IN_FLIGHT, SizingInputs};

/// Runs the server described by `config` until SIGINT or SIGTERM. Builds its own tokio
/// runtime so the blocking-pool size can be set from the configuration.
pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(config.max_blocking_threads)
        .thread_name("purchasing-api")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, shutdown_signal()))?;
    // Dropping the runtime waits for every blocking task still running, including orders
    // whose clients already gave up: they too reach the file before the process exits.
    drop(runtime);
    tracing::info!("stopped");
    Ok(())
}

/// Opens the store, binds, prints `listening on http://ADDR` on stdout, and serves
/// until `shutdown` completes; then stops accepting and waits for in-flight requests.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = config.protections().map_err(anyhow::Error::msg)?;
    // The limits this process runs under, read once, and only when an `auto` setting
    // needs them (the faithful server reads nothing).
    let auto_admission = settings
        .admission
        .is_some_and(|a| a.max_in_flight == InFlightLimit::Auto);
    let environment =
        (auto_admission || settings.fills == MaxInFlight::Auto).then(Environment::discover);
    // Open the orders file first: a server that cannot write orders must not start and
    // then fail every request.
    let mut store_options = settings.store;
    store_options.max_concurrent_fills = match (settings.fills, &environment) {
        (MaxInFlight::Off, _) => None,
        (MaxInFlight::Fixed(n), _) => Some(n),
        (MaxInFlight::Auto, environment) => {
            let cpus = &environment
                .as_ref()
                .expect("discovered for an auto setting")
                .cpus;
            let n = (cpus.value.ceil() as usize).max(1);
            tracing::info!(max_concurrent_fills = n, cpus = cpus.value, cpus_source = %cpus.source,
                "sized the fill gate: one order filling per CPU");
            Some(n)
        }
    };
    let store = PurchaseOrderStore::open_with(
        &config.orders_file,
        config.workload(),
        store_options,
    )
    .with_context(
        || "check that the directory exists and is writable, or choose another --orders-file",
    )?;
    if let (Some(recovery), Some(journal)) =
        (store.journal_recovery(), store.idempotency_journal_path())
    {
        tracing::info!(
            journal = %journal.display(),
            kept = recovery.kept,
            incomplete = recovery.incomplete,
            torn = recovery.torn,
            expired = recovery.expired,
            superseded = recovery.superseded,
            rewritten = recovery.rewritten,
            key_expiry_hours = purchasing_persistence::IDEMPOTENCY_KEY_EXPIRY.as_secs() / 3600,
            "idempotency journal recovered"
        );
    }
    let protections = resolve(&config, &settings, environment).await?;
    let listener = bind(config.bind).await?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;

    tracing::info!(
        %addr,
        orders_file = %config.orders_file.display(),
        alloc_chars = config.alloc_chars,
        delay_ms = config.delay_ms,
        release_early = config.release_early,
        max_blocking_threads = config.max_blocking_threads,
        max_in_flight = protections.admission.map(|a| a.max_in_flight),
        queue = protections.admission.map(|a| a.queue),
        queue_timeout_ms = protections.admission.map(|a| a.queue_timeout.as_millis() as u64),
        max_request_ms = protections.max_request.map(|d| d.as_millis() as u64),
        idempotency = settings.store.idempotency,
        durable = settings.store.durable,
        "purchasing API ready"
    );
    // The one line on stdout: tools and tests read the real port from it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    drop(stdout);

    let state = AppState::with_protections(Arc::new(store), &protections);
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("the server stopped unexpectedly")?;
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
        idle_priority_work: settings.idle_priority_work,
        ..Protections::default()
    };
    if !settings.needs_work_estimate() {
        return Ok(protections);
    }

    let workload = config.workload();
    // Reading /proc and timing an allocation block: done on the blocking pool.
    let (baseline_rss, alloc_time) = tokio::task::spawn_blocking(move || {
        // The baseline is measured before the calibration allocates anything.
        let baseline_rss = limits::resident_memory_bytes().unwrap_or(0);
        let alloc_time = limits::calibrate_alloc_time(workload.alloc_chars);
        (baseline_rss, alloc_time)
    })
    .await
    .context("cannot measure the process's limits")?;
    let work_estimate = workload.delay + alloc_time;
    protections.work_estimate = Some(work_estimate);
    tracing::info!(
        alloc_chars = workload.alloc_chars,
        alloc_ms = alloc_time.as_secs_f64() * 1e3,
        delay_ms = workload.delay.as_millis() as u64,
        work_estimate_ms = work_estimate.as_secs_f64() * 1e3,
        "calibrated the cost of one order"
    );

    if let Some(admission) = settings.admission {
        let max_in_flight = match (admission.max_in_flight, environment) {
            (InFlightLimit::Fixed(n), _) => n,
            (InFlightLimit::Auto, environment) => {
                let environment = environment.expect("discovered for --max-in-flight auto");
                let sizing = limits::size(SizingInputs {
                    memory_limit_bytes: environment.memory.value,
                    baseline_rss_bytes: baseline_rss,
                    alloc_chars: workload.alloc_chars,
                    cpus: environment.cpus.value,
                    delay: workload.delay,
                    alloc_time,
                    // More admitted orders than blocking threads would only queue in the
                    // pool, holding their slot without running.
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
                let n = sizing.max_in_flight;
                protections.sizing = Some(sizing);
                n
            }
        };
        protections.admission = Some(AdmissionLimits {
            max_in_flight,
            queue: admission.queue.unwrap_or(max_in_flight),
            queue_timeout: admission.queue_timeout,
        });
    }
    Ok(protections)
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "; is another purchasing-api running? Stop it or choose another --bind"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "; that address is not on this machine, use 127.0.0.1 or 0.0.0.0"
            }
            std::io::ErrorKind::PermissionDenied => "; ports below 1024 need privileges",
            _ => "",
        };
        anyhow::anyhow!("cannot listen on {addr}: {e}{hint}")
    })
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM (what `kill` and service managers
/// send). axum then stops accepting connections and lets in-flight requests finish.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
    tracing::info!("shutting down: no new connections; finishing orders in progress");
}
