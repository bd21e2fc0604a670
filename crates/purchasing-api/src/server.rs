//! Starting, serving and stopping: the lifecycle of the process.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use purchasing_persistence::PurchaseOrderStore;
use tokio::net::TcpListener;

use crate::app::{AppState, app};
use crate::config::Config;

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
    // Open the orders file first: a server that cannot write orders must not start and
    // then fail every request.
    let store = PurchaseOrderStore::open(&config.orders_file, config.workload()).with_context(
        || "check that the directory exists and is writable, or choose another --orders-file",
    )?;
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
        "purchasing API ready"
    );
    // The one line on stdout: tools and tests read the real port from it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    drop(stdout);

    let state = AppState {
        store: Arc::new(store),
    };
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("the server stopped unexpectedly")?;
    Ok(())
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
