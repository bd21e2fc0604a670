//! Starting, running and stopping: the lifecycle of the process.
//!
//! In order: open the store (a worker that cannot write orders exits at once, status 1,
//! with one line — taking messages only to fail them would be worse); size the prefetch
//! (`auto`, see [`crate::sizing`]); build the runtime with a blocking pool as large as
//! the prefetch; listen for signals; bind the HTTP server and print `listening on
//! http://ADDR`, the only line on stdout; then run sessions ([`crate::session`]) until a
//! shutdown, reconnecting with [`Backoff`] whenever the broker is unreachable or the
//! connection drops. A broker that is down at start-up is the same case: the worker
//! says so in the log and keeps trying, with `/health` answering 503 `connecting`.
//!
//! With several broker URLs (the nodes of a cluster) each reconnect goes to the **next
//! node** of the list, round and round: the node just lost is the one least likely to
//! answer. The pause comes once per round — after every node has failed since the last
//! session that consumed — so a failover to a live node costs no backoff, while a
//! cluster that is down entirely is retried no faster than one broker would be. The
//! broker redelivers what the lost connection held unacknowledged, to whichever worker
//! consumes next; an order already written is replayed from the journal, not written
//! again.
//!
//! A failure that sticks until a restart (the store's orders file or journal) stops
//! consuming and leaves the worker up, `/health` answering 503 `failing` with the
//! store's message, until SIGTERM: a supervisor or an operator restarts it (the restart
//! repairs the file), and the messages stay in the queue for other workers meanwhile.
//! The only broker answer that ends the process is a queue declared with the other
//! mode's properties: no reconnect can change that.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use capacity::Environment;
use purchasing_persistence::PurchaseOrderStore;
use purchasing_service::listener::{self, ConnectionLimits};

use crate::backoff::Backoff;
use crate::config::{Config, FillsSetting, PrefetchSetting, Settings};
use crate::metrics::{Counter, Metrics};
use crate::session::{self, Ended, Fatal, Loss, Plan};
use crate::shutdown::Shutdown;
use crate::state::{Node, Phase, Shared, Status};
use crate::{http, sizing};

/// Blocking threads beyond one per order in flight: room for the runtime's own blocking
/// work (resolving the broker's host name on a reconnect) while every order slot is
/// taken.
const BLOCKING_SLACK: usize = 4;

/// The probe listener's protections, the API's own ([`purchasing_service::listener`]): a
/// flood of idle connections must never take the file descriptors the orders file and
/// the broker connection need, nor keep `/health` from answering for long.
const PROBE_LIMITS: ConnectionLimits = ConnectionLimits {
    // A probe (the lab's poller, HAProxy, curl) sends its request at once; a connection
    // silent this long is closed, which frees its slot for the next probe.
    header_timeout: Duration::from_secs(5),
    // Probes need a handful; the cap is lowered further to what the open-files limit
    // allows (raised to its hard limit first).
    max_connections: 256,
    // How long the HTTP server may take to finish its last requests at exit.
    shutdown_timeout: Duration::from_secs(2),
};

/// Runs the worker described by `config` until SIGINT or SIGTERM.
pub fn run(config: Config) -> anyhow::Result<()> {
    let settings = config.settings()?;
    // The limits this process runs under, read once, only when an `auto` needs them.
    let environment = (settings.prefetch == Some(PrefetchSetting::Auto)
        || settings.fills == FillsSetting::Auto)
        .then(Environment::discover);
    let store = open_store(&config, &settings, environment.as_ref())?;
    let prefetch = resolve_prefetch(&config, &settings, environment.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(usize::from(prefetch).max(1) + BLOCKING_SLACK)
        .thread_name("purchasing-worker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = Shutdown::listen().context("cannot listen for SIGINT and SIGTERM")?;
        serve(config, settings, store, prefetch, shutdown).await
    })?;
    // Every order has finished by now (each session waits for its own); dropping the
    // runtime would wait for any blocking task still running.
    drop(runtime);
    tracing::info!("stopped");
    Ok(())
}

/// Opens the orders file (and in reliable mode its idempotency journal).
fn open_store(
    config: &Config,
    settings: &Settings,
    environment: Option<&Environment>,
) -> anyhow::Result<PurchaseOrderStore> {
    let mut options = settings.store;
    options.max_concurrent_fills = match settings.fills {
        FillsSetting::Off => None,
        FillsSetting::Fixed(n) => Some(n),
        FillsSetting::Auto => Some(purchasing_service::auto_fill_gate(
            environment.expect("discovered for an auto setting"),
        )),
    };
    purchasing_service::open_store(&config.store, options)
}

/// The prefetch in force: 0 (no limit) in faithful mode, else `--prefetch`, with `auto`
/// sized from the memory limit. Fails when not one order fits.
fn resolve_prefetch(
    config: &Config,
    settings: &Settings,
    environment: Option<&Environment>,
) -> anyhow::Result<u16> {
    match settings.prefetch {
        None => Ok(0),
        Some(PrefetchSetting::Fixed(n)) => Ok(n),
        Some(PrefetchSetting::Auto) => {
            let environment = environment.expect("discovered for --prefetch auto");
            // Measured before any order: what the worker needs anyway.
            let baseline_rss = capacity::resident_memory_bytes().unwrap_or(0);
            let (prefetch, sizing) =
                sizing::auto_prefetch(environment, baseline_rss, config.workload())
                    .map_err(anyhow::Error::msg)?;
            tracing::info!(
                prefetch,
                n_mem = sizing.n_mem,
                cap = sizing.inputs.cap,
                memory_limit_bytes = environment.memory.value,
                memory_limit_source = %environment.memory.source,
                baseline_rss_bytes = baseline_rss,
                memory_share = capacity::MEMORY_SHARE,
                alloc_chars = config.store.alloc_chars,
                "sized the prefetch: orders that fit in memory, \
                 floor((memory_share * memory_limit - baseline_rss) / alloc_chars), at most cap \
                 (no CPU bound: a queue refuses nothing, so it needs no CPU headroom)"
            );
            Ok(prefetch)
        }
    }
}

/// Serves /health and /metrics, prints the address, consumes until `shutdown`.
async fn serve(
    config: Config,
    settings: Settings,
    store: PurchaseOrderStore,
    prefetch: u16,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let urls = config.amqp_urls();
    let shared = Shared {
        store: Arc::new(store),
        metrics: Arc::new(Metrics::new(config.store.alloc_chars, prefetch)),
        status: Arc::new(Status::default()),
        delivery: settings.delivery,
        broker: Arc::new(Node::new(urls.first())),
        backlog: Default::default(),
    };
    let listener = listener::bind(
        config.http_bind,
        "for /health and /metrics",
        "choose another --http-bind (port 0 picks a free one)",
    )
    .await?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    log_ready(&config, &settings, prefetch, addr);
    listener::announce(addr)?;

    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = ConnectionLimits {
        max_connections: listener::connection_cap(PROBE_LIMITS.max_connections, None),
        ..PROBE_LIMITS
    };
    let http = tokio::spawn(listener::accept_loop(
        listener,
        http::router(shared.clone()),
        limits,
        async {
            let _ = http_stopped.await;
        },
    ));
    let plan = Plan {
        urls,
        node: 0,
        delivery: settings.delivery,
        prefetch,
        ack_delay: settings.ack_delay,
        probation: false,
    };
    let consumed = consume(&plan, &shared, &mut shutdown).await;
    let _ = stop_http.send(());
    // The loop bounds its own shutdown (PROBE_LIMITS.shutdown_timeout).
    if http.await.is_err() {
        tracing::debug!("the HTTP server ended with a panic");
    }
    consumed
}

/// The start-up line of the log: where the probes listen, which broker and queue, and
/// what the worker was told to do.
fn log_ready(config: &Config, settings: &Settings, prefetch: u16, addr: std::net::SocketAddr) {
    tracing::info!(
        %addr,
        brokers = %config.amqp_urls(),
        queue = wire_contract::amqp::QUEUE,
        delivery = %settings.delivery,
        prefetch,
        orders_file = %config.store.orders_file.display(),
        alloc_chars = config.store.alloc_chars,
        delay_ms = config.store.delay_ms,
        release_early = config.store.release_early,
        durable = settings.store.durable,
        idempotency = settings.store.idempotency,
        ack_delay_ms = config.ack_delay_ms,
        "purchasing worker ready"
    );
}

/// Runs sessions until a shutdown (see the module doc).
async fn consume(plan: &Plan, shared: &Shared, shutdown: &mut Shutdown) -> anyhow::Result<()> {
    let mut backoff = Backoff::default();
    let mut failover = Failover::default();
    let mut ever_consumed = false;
    let mut plan = plan.clone();
    loop {
        shared.broker.set(plan.url());
        let ended = session::run(&plan, shared, shutdown)
            .await
            .map_err(|Fatal(why)| anyhow::anyhow!(why))?;
        let loss = match ended {
            Ended::Stopped => return Ok(()),
            Ended::StoreFailed(reason) => {
                tracing::error!(%reason,
                    "stopped consuming until a restart: the messages stay in the queue for \
                     other workers; restart this worker (the restart repairs the file)");
                shutdown.requested().await;
                return Ok(());
            }
            Ended::Promoted => {
                plan.probation = false;
                backoff.reset();
                continue;
            }
            Ended::Lost(loss) => loss,
        };
        let Loss {
            reason,
            consumed,
            progressed,
            unreadable,
        } = loss;
        if consumed {
            ever_consumed = true;
            shared.metrics.count(Counter::ConnectionsLost);
        }
        // Only progress resets the backoff: sessions that keep dying before they settle
        // anything (the same unreadable message each time) reconnect ever more slowly.
        if progressed {
            backoff.reset();
        }
        // After an unreadable delivery, and until a session makes progress: probation.
        plan.probation = plan.delivery == wire_contract::amqp::Delivery::Reliable
            && (unreadable || (plan.probation && !progressed));
        let lost = plan.url().clone();
        let round_failed = failover.next(&mut plan, consumed);
        let pause = if round_failed {
            backoff.next_pause()
        } else {
            Duration::ZERO
        };
        let phase = if ever_consumed {
            Phase::Reconnecting
        } else {
            Phase::Connecting
        };
        shared.status.set(phase, Some(reason.clone()));
        tracing::warn!(broker = %lost, next = %plan.url(), %reason,
            retry_in_ms = pause.as_millis() as u64, "{}; retrying",
            if consumed { "lost the broker connection" } else { "cannot reach the broker" });
        tokio::select! {
            () = shutdown.requested() => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Which node the next session connects to, and whether a backoff pause is due first
/// (see the module doc).
#[derive(Debug, Default)]
struct Failover {
    /// Sessions in a row that failed since the last one that consumed, in this round.
    failed: usize,
}

impl Failover {
    /// After a session on `plan.node` failed (`consumed`: it got as far as consuming):
    /// moves `plan` on to the next node, and says whether every node has now failed once
    /// in this round, so the pause is due. With one node, every failure ends a round.
    fn next(&mut self, plan: &mut Plan, consumed: bool) -> bool {
        let nodes = plan.urls.len();
        if consumed {
            self.failed = 0;
        }
        self.failed += 1;
        plan.node = (plan.node + 1) % nodes;
        let round_over = self.failed >= nodes;
        if round_over {
            self.failed = 0;
        }
        round_over
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(urls: &str) -> Plan {
        Plan {
            urls: amqp_link::AmqpUrls::parse(urls).unwrap(),
            node: 0,
            delivery: wire_contract::amqp::Delivery::Reliable,
            prefetch: 1,
            ack_delay: Duration::ZERO,
            probation: false,
        }
    }

    #[test]
    fn one_node_pauses_after_every_failure_as_before() {
        let (mut plan, mut failover) = (plan("amqp://a"), Failover::default());
        for consumed in [true, false, false] {
            assert!(failover.next(&mut plan, consumed));
            assert_eq!(plan.node, 0);
        }
    }

    #[test]
    fn a_lost_node_is_left_for_the_next_at_once_and_a_failed_round_pauses() {
        let (mut plan, mut failover) = (plan("amqp://a,amqp://b,amqp://c"), Failover::default());
        // Consuming on a, lost: b at once.
        assert!(!failover.next(&mut plan, true));
        assert_eq!(plan.url().host(), "b");
        // b and c unreachable too: the round is over after c, and a is next.
        assert!(!failover.next(&mut plan, false));
        assert_eq!(plan.url().host(), "c");
        assert!(failover.next(&mut plan, false));
        assert_eq!(plan.url().host(), "a");
        // A new round: a pause again only after three more failures.
        assert!(!failover.next(&mut plan, false));
        assert!(!failover.next(&mut plan, false));
        assert!(failover.next(&mut plan, false));
    }
}
