//! `loadtest broker`: a private broker (or a cluster of them, `--nodes N`) in the
//! foreground until Ctrl-C or SIGTERM.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal as unix_signal};

use super::cluster::start_cluster;
use super::handle::Broker;
use super::options::{BrokerError, BrokerOptions};

/// The signals that stop the broker: Ctrl-C, `kill`, a closed terminal.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: unix_signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: unix_signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            hangup: unix_signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    /// Until one of them arrives.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}

/// `loadtest broker`: starts `nodes` brokers joined into one cluster (one by default),
/// prints their AMQP URLs, comma-separated, as the only line on stdout (and on stderr how
/// to run `rabbitmqctl` against each), and runs until SIGINT (Ctrl-C), SIGTERM or SIGHUP,
/// then stops them cleanly. A signal during the start abandons it. Fails if the broker
/// (every node of a cluster) dies by itself.
pub fn run_foreground(options: BrokerOptions, nodes: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Handlers first: from here on a signal cannot kill us before the broker is
        // stopped (the default action would leave the data directory behind).
        let mut signals = StopSignals::install()?;
        let Some(brokers) = start(options, nodes, &mut signals).await? else {
            eprintln!("loadtest: stopped before RabbitMQ was ready; nothing is left running");
            return Ok(());
        };
        announce(&brokers);
        let died = watch(&brokers, &mut signals).await;
        if died.is_none() {
            eprintln!("loadtest: stopping RabbitMQ");
        }
        let stopped = tokio::task::spawn_blocking(move || stop_all(brokers))
            .await
            .context("the broker stop task failed")??;
        if let Some(how) = died {
            anyhow::bail!(
                "RabbitMQ {how} by itself; see its log (keep it with --keep-data DIR to read it after the stop)"
            );
        }
        eprintln!(
            "loadtest: RabbitMQ stopped {}in {:.1} s",
            if stopped.graceful { "" } else { "(killed after the grace period) " },
            stopped.elapsed.as_secs_f64()
        );
        Ok(())
    })
}

/// Stops every node, the last one first (a node stopped while its peers run leaves the
/// cluster for them to forget cleanly); how the whole stop went.
fn stop_all(brokers: Vec<Broker>) -> Result<super::Stopped, BrokerError> {
    let started = std::time::Instant::now();
    let mut graceful = true;
    for broker in brokers.into_iter().rev() {
        graceful &= broker.stop()?.graceful;
    }
    Ok(super::Stopped {
        graceful,
        elapsed: started.elapsed(),
    })
}

/// Starts the broker; `None` when a signal abandoned the start.
async fn start(
    mut options: BrokerOptions,
    nodes: usize,
    signals: &mut StopSignals,
) -> anyhow::Result<Option<Vec<Broker>>> {
    let cancel = Arc::new(AtomicBool::new(false));
    options.cancel = Some(Arc::clone(&cancel));
    options.progress = true;
    let starting = tokio::task::spawn_blocking(move || start_cluster(nodes, options, &[]));
    tokio::pin!(starting);
    let started = loop {
        tokio::select! {
            started = &mut starting => break started.context("the broker start task failed")?,
            () = signals.recv() => cancel.store(true, Ordering::SeqCst),
        }
    };
    match started {
        Ok(brokers) => Ok(Some(brokers)),
        Err(BrokerError::Cancelled) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The URLs alone on stdout, on one line (for scripts: `URL=$(loadtest broker | head -1)`;
/// the clients take the list as it is), then on stderr what a person needs: each node,
/// its data, its `rabbitmqctl` line, how to stop.
fn announce(brokers: &[Broker]) {
    {
        let urls: Vec<String> = brokers.iter().map(Broker::amqp_url).collect();
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "{}", urls.join(","));
        let _ = stdout.flush();
    }
    for broker in brokers {
        eprintln!(
            "loadtest: RabbitMQ ready in {:.1} s (node {}, pid {}, data in {})",
            broker.ready_after().as_secs_f64(),
            broker.node_name(),
            broker
                .pid()
                .map_or_else(|| "?".to_string(), |p| p.to_string()),
            broker.data_dir().display(),
        );
        eprintln!("rabbitmqctl: {} list_queues", broker.rabbitmqctl_command());
    }
    eprintln!(
        "loadtest: stop {} with Ctrl-C or kill -TERM {}",
        if brokers.len() > 1 {
            "the cluster"
        } else {
            "it"
        },
        std::process::id()
    );
}

/// Until a stop signal (`None`) or the broker's death (how it ended). A cluster's node
/// that dies is reported once and the others keep running — killing one by hand to watch
/// the clients fail over is what a cluster is for; the watch ends when the last node has
/// died.
async fn watch(brokers: &[Broker], signals: &mut StopSignals) -> Option<String> {
    // Often enough that a crash is reported at once; a check is one waitpid.
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let mut reported = vec![false; brokers.len()];
    loop {
        tokio::select! {
            () = signals.recv() => return None,
            _ = check.tick() => {
                let mut last = None;
                for (broker, reported) in brokers.iter().zip(&mut reported) {
                    if broker.is_running() || *reported {
                        continue;
                    }
                    *reported = true;
                    let how = broker.exit_description().unwrap_or_else(|| "ended".into());
                    let how = format!("(node {}) {how}", broker.node_name());
                    if brokers.len() > 1 {
                        eprintln!("loadtest: RabbitMQ {how}; the other nodes keep running (Ctrl-C stops them)");
                    }
                    last = Some(how);
                }
                if reported.iter().all(|r| *r) {
                    let how = last.unwrap_or_else(|| "ended".into());
                    return Some(if brokers.len() > 1 { format!("{how}, the last node") } else { how });
                }
            }
        }
    }
}
