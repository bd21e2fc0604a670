//! Starting, serving and stopping: the lifecycle of the process.
//!
//! The accept loop is written here on hyper's connection builder rather than taken from
//! `axum::serve`, because the server needs what that convenience does not offer:
//!
//! * **A read timeout on every connection.** A client must send a request's headers
//!   within `--header-timeout-ms`; the same timer closes a keep-alive connection left
//!   idle that long. (The body has its own timeouts, see [`crate::body`].) Without them a
//!   silent connection stays open for ever, and a thousand of them exhaust the open-files
//!   limit so that even `/health` goes unanswered.
//! * **A cap on connections** (`--max-connections`, lowered to what the open-files limit
//!   allows, which is first raised to its hard limit): at the cap the loop stops
//!   accepting and further clients wait in the kernel's accept queue, instead of the
//!   process failing `accept` with "too many open files".
//! * **A bounded graceful shutdown.** On SIGTERM the listener closes, idle connections
//!   close, requests in progress get `--shutdown-timeout-ms` to finish; then the rest is
//!   closed. Orders whose work has started still finish writing before the process exits
//!   (the runtime waits for its blocking pool), so every order that was acknowledged —
//!   and any that was about to be — is in the file.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use purchasing_persistence::PurchaseOrderStore;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::admission::{Adaptive, AdmissionLimits};
use crate::app::app;
use crate::config::{Config, InFlightLimit, MaxInFlight, ProtectionSettings};
use crate::limits::{self, Environment, MAX_AUTO_IN_FLIGHT, SizingInputs};
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
    runtime.block_on(serve(config, shutdown_signal()))?;
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
    let settings = config.protections().map_err(anyhow::Error::msg)?;
    // The limits this process runs under, read once, and only when an `auto` setting
    // needs them (the faithful server reads nothing).
    let auto_admission = settings
        .admission
        .is_some_and(|a| !matches!(a.max_in_flight, InFlightLimit::Fixed(_)));
    let environment =
        (auto_admission || settings.fills == MaxInFlight::Auto).then(Environment::discover);
    // Open the orders file first: a server that cannot write orders must not start and
    // then fail every request.
    let mut store_options = settings.store;
    store_options.max_concurrent_fills = match (settings.fills, &environment) {
        (MaxInFlight::Off, _) => None,
        (MaxInFlight::Fixed(n), _) => Some(n),
        // (`adaptive` is refused for the fills when the flags are read.)
        (MaxInFlight::Auto | MaxInFlight::Adaptive, environment) => {
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
    let store =
        PurchaseOrderStore::open_with(&config.orders_file, config.workload(), store_options)
            .map_err(|error| anyhow::anyhow!("{error}{}", error.open_hint()))?;
    report_store_recovery(&store);
    // Under admission control the connections get a memory budget too (see
    // `connection_cap`); the faithful server, as the original, has none.
    let connection_memory = settings.admission.is_some().then(|| {
        environment
            .as_ref()
            .map_or_else(|| Environment::discover().memory.value, |e| e.memory.value)
    });
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

    // Created here, on the thread that called `run`, before it lowers its priority: the
    // order threads keep this priority (see `crate::work_pool`).
    let state = AppState::with_protections(Arc::new(store), &protections);
    let work = state.work.clone();
    let limits = ConnectionLimits {
        header_timeout: config.header_timeout(),
        max_connections: connection_cap(config.max_connections, connection_memory),
        shutdown_timeout: config.shutdown_timeout(),
    };
    if protections.prioritize_work {
        // This thread accepts connections: control path.
        crate::priority::lower_current_thread();
    }
    if let Some(agent_addr) = config.haproxy_agent_bind {
        let agent = crate::agent::bind(agent_addr).await?;
        let admission = state.admission.clone();
        let cap = limits.max_connections;
        tokio::spawn(crate::agent::serve(agent, move || {
            admission.as_ref().map_or(cap, |a| a.current_limit())
        }));
    }
    accept_loop(listener, app(state), limits, shutdown).await;
    // Every order that started — acknowledged, or about to be, or abandoned by its client
    // — reaches the file before the process exits.
    let waiting = tokio::task::spawn_blocking(move || work.wait_idle());
    if waiting.await.is_err() {
        tracing::error!("could not wait for the orders in progress");
    }
    Ok(())
}

/// File descriptors kept free for everything that is not a client connection: the
/// orders file and journal (opened per order), the listener, the runtime, logging.
const RESERVED_FILES: u64 = 64;

/// After `accept` fails for lack of resources (file descriptors, memory), wait this long
/// before trying again: retrying at once would spin the CPU on the same error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How the accept loop treats connections.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    header_timeout: Duration,
    max_connections: usize,
    shutdown_timeout: Duration,
}

/// The share of the memory limit open connections may take under admission control:
/// half of what the orders leave (1 − [`limits::MEMORY_SHARE`]), so that a flood of
/// connections cannot push a node whose orders fill their share into the OOM killer.
const CONNECTION_MEMORY_SHARE: f64 = (1.0 - limits::MEMORY_SHARE) / 2.0;

/// What one open connection may cost, for the cap above: the connection's task, hyper's
/// buffers and the kernel's socket buffers charged to the process's cgroup, with room.
const BYTES_PER_CONNECTION: u64 = 64 << 10;

/// The connection cap in force: `wanted`, lowered to what the open-files limit allows
/// after raising its soft value to the hard one (a common default soft limit is 1024,
/// far below what the kernel lets a process have), and, given a memory limit, to what
/// fits in [`CONNECTION_MEMORY_SHARE`] of it.
fn connection_cap(wanted: usize, memory_limit: Option<u64>) -> usize {
    let files = raise_open_files_limit();
    let by_files = files.map_or(usize::MAX, |files| {
        usize::try_from(files.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX)
    });
    let by_memory = memory_limit.map_or(usize::MAX, |bytes| {
        ((bytes as f64 * CONNECTION_MEMORY_SHARE) / BYTES_PER_CONNECTION as f64).max(16.0) as usize
    });
    let cap = wanted.min(by_files).min(by_memory);
    if cap < wanted {
        tracing::info!(
            max_connections = cap,
            requested = wanted,
            open_files_limit = files,
            memory_limit_bytes = memory_limit,
            "fewer connections than --max-connections at once: the open-files limit or the \
             memory limit allows no more (further clients wait in the accept queue)"
        );
    }
    cap
}

/// Raises this process's soft limit on open files to its hard limit and returns the
/// limit now in force (`None` if it cannot be read).
fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// Accepts and serves connections until `shutdown` completes, then shuts down within
/// `limits.shutdown_timeout` (see the module docs).
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut last_accept_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // At the cap, wait for a connection to end before accepting another.
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    if is_resource_exhaustion(&error) {
                        // Logged at most once a second: a flood must not also flood the log.
                        if last_accept_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                            tracing::warn!(%error, connections = limits.max_connections - slots.available_permits(),
                                "cannot accept a connection; pausing briefly");
                            last_accept_warning = Some(Instant::now());
                        }
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    } else {
                        // A client that reset its connection before it was accepted.
                        tracing::debug!(%error, "accept failed");
                    }
                    continue;
                }
            },
        };
        // Answers are small and sent whole: do not let Nagle's algorithm hold them back.
        let _ = stream.set_nodelay(true);
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            if let Err(error) = connection.await {
                // Timeouts, resets and malformed requests: the client's doing, not ours.
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open_connections = open,
        shutdown_timeout_ms = limits.shutdown_timeout.as_millis() as u64,
        "no longer accepting; waiting for requests in progress"
    );
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            closed = connections.len(),
            shutdown_timeout_ms = limits.shutdown_timeout.as_millis() as u64,
            "closing connections still open after the shutdown timeout; orders already \
             being worked on still finish before the process exits"
        );
    }
    connections.shutdown().await;
}

/// Errors of `accept` that mean "out of a resource, try again later" rather than "this
/// one client went away".
fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        error.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

/// Logs what opening the store found and changed (worded by the store): at WARN what an
/// operator must see — a partial last line removed, idempotency keys dropped — and the
/// journal's recovery counts at INFO.
fn report_store_recovery(store: &PurchaseOrderStore) {
    for warning in store.start_up_warnings() {
        tracing::warn!("{warning}");
    }
    if let Some(summary) = store.journal_summary() {
        tracing::info!("{summary}");
    }
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
        let mut adaptive = None;
        let max_in_flight = match (admission.max_in_flight, environment) {
            (InFlightLimit::Fixed(n), _) => n,
            (limit @ (InFlightLimit::Auto | InFlightLimit::Adaptive), environment) => {
                let environment =
                    environment.expect("discovered for --max-in-flight auto or adaptive");
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
                if let Some(why) = sizing.nothing_fits() {
                    anyhow::bail!("{why} (memory limit from {})", environment.memory.source);
                }
                let n = sizing.max_in_flight;
                if limit == InFlightLimit::Adaptive {
                    // The auto size is only the start; the memory bound is the ceiling.
                    let cap = sizing.n_mem.min(sizing.inputs.cap).max(1);
                    tracing::info!(
                        start = n,
                        cap,
                        fill_estimate_ms = alloc_time.as_secs_f64() * 1e3,
                        "admission limit adapts to the wait for the CPU, between 1 and the \
                         orders that fit in memory"
                    );
                    adaptive = Some(Adaptive {
                        cap,
                        fill_estimate: alloc_time,
                    });
                }
                protections.sizing = Some(sizing);
                n
            }
        };
        // A queue as long as the most slots there can be.
        let most = adaptive.map_or(max_in_flight, |a| a.cap);
        protections.admission = Some(AdmissionLimits {
            max_in_flight,
            queue: admission.queue.unwrap_or(most),
            queue_timeout: admission.queue_timeout,
            adaptive,
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
/// send). The server then stops accepting connections and lets in-flight requests
/// finish, within the shutdown timeout.
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
