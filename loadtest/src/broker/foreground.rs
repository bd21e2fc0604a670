//! `loadtest broker`: a private broker in the foreground until Ctrl-C or SIGTERM.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::handle::Broker;
use super::options::{BrokerError, BrokerOptions};

/// `loadtest broker`: starts a broker, prints its AMQP URL as the only line on stdout,
/// and runs until SIGINT (Ctrl-C), SIGTERM or SIGHUP, then stops it cleanly. A signal
/// during the start abandons it. Fails if the broker dies by itself.
pub fn run_foreground(mut options: BrokerOptions) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use tokio::signal::unix::{SignalKind, signal as unix_signal};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Handlers first: from here on a signal cannot kill us before the broker is
        // stopped (the default action would leave the data directory behind).
        let mut interrupt = unix_signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = unix_signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut hangup = unix_signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let cancel = Arc::new(AtomicBool::new(false));
        options.cancel = Some(Arc::clone(&cancel));
        options.progress = true;
        let starting = tokio::task::spawn_blocking(move || Broker::start(options));
        tokio::pin!(starting);
        let broker = loop {
            tokio::select! {
                started = &mut starting => break started.context("the broker start task failed")?,
                _ = interrupt.recv() => cancel.store(true, Ordering::SeqCst),
                _ = terminate.recv() => cancel.store(true, Ordering::SeqCst),
                _ = hangup.recv() => cancel.store(true, Ordering::SeqCst),
            }
        };
        let broker = match broker {
            Ok(broker) => broker,
            Err(BrokerError::Cancelled) => {
                eprintln!("loadtest: stopped before RabbitMQ was ready; nothing is left running");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        {
            let mut stdout = io::stdout().lock();
            let _ = writeln!(stdout, "{}", broker.amqp_url());
            let _ = stdout.flush();
        }
        eprintln!(
            "loadtest: RabbitMQ ready in {:.1} s (node {}, pid {}, data in {}); stop it with Ctrl-C or kill -TERM {}",
            broker.ready_after().as_secs_f64(),
            broker.node_name(),
            broker.pid().map_or_else(|| "?".to_string(), |p| p.to_string()),
            broker.data_dir().display(),
            std::process::id()
        );
        let mut check = tokio::time::interval(Duration::from_millis(500));
        let died = loop {
            tokio::select! {
                _ = interrupt.recv() => break None,
                _ = terminate.recv() => break None,
                _ = hangup.recv() => break None,
                _ = check.tick() => {
                    if !broker.is_running() {
                        break broker.exit_description();
                    }
                }
            }
        };
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
