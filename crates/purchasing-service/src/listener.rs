//! The protected accept loop both services serve HTTP with. It is written on hyper's
//! connection builder rather than taken from `axum::serve`, because a service needs what
//! that convenience does not offer:
//!
//! * **A read timeout on every connection.** A client must send a request's headers
//!   within the header timeout; the same timer closes a keep-alive connection left idle
//!   that long. Without it a silent connection stays open for ever, and a thousand of them
//!   exhaust the open-files limit, so that the orders file cannot be opened and even
//!   `/health` goes unanswered.
//! * **A cap on connections**, lowered to what the open-files limit allows (which is first
//!   raised to its hard limit): at the cap the loop stops accepting and further clients
//!   wait in the kernel's accept queue, instead of the process failing `accept` — or
//!   worse, `open` of the orders file — with "too many open files".
//! * **A bounded graceful shutdown.** When `shutdown` completes the listener closes, idle
//!   connections close, requests in progress get the shutdown timeout to finish; then the
//!   rest is closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// File descriptors kept free for everything that is not a client connection: the
/// orders file and journal (opened per order), the listener, the runtime, logging.
const RESERVED_FILES: u64 = 64;

/// After `accept` fails for lack of resources (file descriptors, memory), wait this long
/// before trying again: retrying at once would spin the CPU on the same error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// How the accept loop treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within this; a keep-alive connection idle this
    /// long is closed too.
    pub header_timeout: Duration,
    /// Open connections at most (see [`connection_cap`]).
    pub max_connections: usize,
    /// At shutdown, how long requests in progress may take to finish.
    pub shutdown_timeout: Duration,
}

/// The share of the memory limit open connections may take under admission control:
/// half of what the orders leave (1 − [`capacity::MEMORY_SHARE`]), so that a flood of
/// connections cannot push a node whose orders fill their share into the OOM killer.
const CONNECTION_MEMORY_SHARE: f64 = (1.0 - capacity::MEMORY_SHARE) / 2.0;

/// What one open connection may cost, for the cap above: the connection's task, hyper's
/// buffers and the kernel's socket buffers charged to the process's cgroup, with room.
const BYTES_PER_CONNECTION: u64 = 64 << 10;

/// The connection cap in force: `wanted`, lowered to what the open-files limit allows
/// after raising its soft value to the hard one (a common default soft limit is 1024,
/// far below what the kernel lets a process have), and, given a memory limit, to what
/// fits in [`CONNECTION_MEMORY_SHARE`] of it.
pub fn connection_cap(wanted: usize, memory_limit: Option<u64>) -> usize {
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
            "fewer connections at once than asked for (the API's --max-connections, the \
             worker's probe cap): the open-files limit or the memory limit allows no more \
             (further clients wait in the accept queue)"
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
pub async fn accept_loop(
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

/// Binds `addr`, or fails with one line: what could not listen (`purpose`, e.g. "for
/// /health and /metrics", may be empty), why, and what to do — `in_use_hint` when the
/// port is taken (which flag to change).
pub async fn bind(
    addr: SocketAddr,
    purpose: &str,
    in_use_hint: &str,
) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => in_use_hint,
            std::io::ErrorKind::AddrNotAvailable => {
                "that address is not on this machine, use 127.0.0.1 or 0.0.0.0"
            }
            std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges",
            _ => "",
        };
        let purpose = if purpose.is_empty() {
            String::new()
        } else {
            format!(" {purpose}")
        };
        let hint = if hint.is_empty() {
            String::new()
        } else {
            format!("; {hint}")
        };
        anyhow::anyhow!("cannot listen on {addr}{purpose}: {e}{hint}")
    })
}

/// Prints `listening on http://ADDR`, the one line on stdout: tools and tests read the
/// real port from it (port 0 picks one), so it goes out whole and flushed.
pub fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .map_err(|e| anyhow::anyhow!("cannot write to stdout: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_timeout: Duration::from_millis(300),
        max_connections: 2,
        shutdown_timeout: Duration::from_millis(200),
    };

    /// Serves a one-route app under `limits`; returns its address and the stop switch.
    async fn serve(limits: ConnectionLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = bind("127.0.0.1:0".parse().unwrap(), "", "").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(accept_loop(listener, app, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Sends one request on a fresh connection and reads the answer's status line.
    async fn get(addr: SocketAddr) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer.lines().next().unwrap_or_default().to_string())
    }

    #[test]
    fn the_cap_is_lowered_to_what_the_memory_limit_allows() {
        let unbounded = connection_cap(1000, None);
        assert!((1..=1000).contains(&unbounded));
        // 64 MiB: a fifth of it for connections at 64 KiB each is 102; never below 16.
        let small = connection_cap(1000, Some(64 << 20));
        assert_eq!(
            small,
            ((64u64 << 20) as f64 * CONNECTION_MEMORY_SHARE / 65536.0) as usize
        );
        assert!(small < 1000);
        assert_eq!(connection_cap(1000, Some(1 << 20)), 16);
        assert_eq!(
            connection_cap(5, Some(64 << 20)),
            5,
            "never above what was asked for"
        );
    }

    #[tokio::test]
    async fn clients_past_the_cap_wait_and_are_served_once_a_silent_one_is_closed() {
        let (addr, _stop) = serve(LIMITS).await;
        // Two silent connections take both slots.
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A third client waits in the accept queue, then is served once the header
        // timeout has closed a silent one.
        let asked = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(5), get(addr))
            .await
            .expect("served within the header timeout")
            .unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            asked.elapsed() >= Duration::from_millis(200),
            "answered after {:?}: the cap did not hold the client back",
            asked.elapsed()
        );
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_header_timeout() {
        let (addr, _stop) = serve(LIMITS).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let opened = Instant::now();
        // Closed by the server: hyper may answer 408 first; either way the stream ends.
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest))
            .await
            .expect("closed within the header timeout")
            .ok();
        assert!(
            opened.elapsed() >= Duration::from_millis(250),
            "closed after {:?}, before the header timeout",
            opened.elapsed()
        );
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let (addr, stop) = serve(LIMITS).await;
        assert_eq!(get(addr).await.unwrap(), "HTTP/1.1 200 OK");
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(get(addr).await.is_err(), "still accepting after shutdown");
    }

    #[tokio::test]
    async fn bind_names_the_address_the_purpose_and_what_to_do() {
        let taken = bind("127.0.0.1:0".parse().unwrap(), "", "").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let error = bind(addr, "for /health", "choose another --http-bind")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("cannot listen on {addr} for /health: ")),
            "{error}"
        );
        assert!(error.ends_with("; choose another --http-bind"), "{error}");
        let foreign = bind("192.0.2.1:0".parse().unwrap(), "", "")
            .await
            .unwrap_err()
            .to_string();
        assert!(foreign.contains("not on this machine"), "{foreign}");
    }
}
