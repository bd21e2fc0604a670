//! `loadtest broker`: a private broker in the foreground until Ctrl-C or SIGTERM.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal as unix_signal};

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

/// `loadtest broker`: starts a broker, prints its AMQP URL as the only line on stdout
/// (and on stderr how to run `rabbitmqctl` against it), and runs until SIGINT (Ctrl-C),
/// SIGTERM or SIGHUP, then stops it cleanly. A signal during the start abandons it.
/// Fails if the broker dies by itself.
pub fn run_foreground(options: BrokerOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Handlers first: from here on a signal cannot kill us before the broker is
        // stopped (the default action would leave the data directory behind).
        let mut signals = StopSignals::install()?;
        let Some(broker) = start(options, &mut signals).await? else {
            eprintln!("loadtest: stopped before RabbitMQ was ready; nothing is left running");
            return Ok(());
        };
        announce(&broker);
        let died = watch(&broker, &mut signals).await;
        if died.is_none() {
            eprintln!("loadtest: stopping RabbitMQ");
        }
        let stopped = tokio::task::spawn_blocking(move || broker.stop())
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

/// Starts the broker; `None` when a signal abandoned the start.
async fn start(
    mut options: BrokerOptions,
    signals: &mut StopSignals,
) -> anyhow::Result<Option<Broker>> {
    let cancel = Arc::new(AtomicBool::new(false));
    options.cancel = Some(Arc::clone(&cancel));
    options.progress = true;
    let starting = tokio::task::spawn_blocking(move || Broker::start(options));
    tokio::pin!(starting);
    let started = loop {
        tokio::select! {
            started = &mut starting => break started.context("the broker start task failed")?,
            () = signals.recv() => cancel.store(true, Ordering::SeqCst),
        }
    };
    match started {
        Ok(broker) => Ok(Some(broker)),
        Err(BrokerError::Cancelled) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The URL alone on stdout (for scripts: `URL=$(loadtest broker | head -1)`), then on
/// stderr what a person needs: the node, its data, the `rabbitmqctl` line, how to stop.
fn announce(broker: &Broker) {
    {
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "{}", broker.amqp_url());
        let _ = stdout.flush();
    }
    eprintln!(
        "loadtest: RabbitMQ ready in {:.1} s (node {}, pid {}, data in {}); stop it with Ctrl-C or kill -TERM {}",
        broker.ready_after().as_secs_f64(),
        broker.node_name(),
        broker
            .pid()
            .map_or_else(|| "?".to_string(), |p| p.to_string()),
        broker.data_dir().display(),
        std::process::id()
    );
    eprintln!("rabbitmqctl: {} list_queues", broker.rabbitmqctl_command());
}

/// Until a stop signal (`None`) or the broker's death (how it ended).
async fn watch(broker: &Broker, signals: &mut StopSignals) -> Option<String> {
    // Often enough that a crash is reported at once; a check is one waitpid.
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            () = signals.recv() => return None,
            _ = check.tick() => {
                if !broker.is_running() {
                    return broker.exit_description();
                }
            }
        }
    }
}
