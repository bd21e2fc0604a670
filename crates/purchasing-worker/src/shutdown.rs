//! SIGINT (Ctrl-C) and SIGTERM (what `kill` and service managers send) as a latch every
//! part of the worker can wait on: the consumer loop, a reconnect pause, a connect in
//! progress. A latch rather than a one-shot future, because the consumer checks it at
//! several points (between messages, while connecting, while pausing) and each must see
//! a signal that arrived before it looked.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// A cheap handle on the latch.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Listens for SIGINT and SIGTERM from now on. Call it inside the runtime, before the
    /// `listening on` line, so a tool that signals as soon as it reads the line is heard.
    pub fn listen() -> std::io::Result<Self> {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let (latch, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
            latch.send_replace(true);
            // Keep the sender: a dropped sender would read as a shutdown to nobody.
            std::future::pending::<()>().await;
        });
        Ok(Self(shutdown))
    }

    /// Completes once a shutdown was requested (at once if it already was).
    pub async fn requested(&mut self) {
        if self.0.wait_for(|&stop| stop).await.is_err() {
            // The sender is gone: no shutdown can ever come.
            std::future::pending::<()>().await;
        }
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}
