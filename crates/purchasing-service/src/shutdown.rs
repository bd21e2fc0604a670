//! Graceful shutdown, one mechanism for both services: SIGINT (Ctrl-C) and SIGTERM (what
//! `kill` and service managers send) as a latch every part of a service can wait on — the
//! accept loop, the worker's consumer loop, a reconnect pause, a connect in progress. A
//! latch rather than a one-shot future, because the worker checks it at several points
//! (between messages, while connecting, while pausing) and each must see a signal that
//! arrived before it looked. The signal handlers are installed by [`Shutdown::listen`],
//! before the `listening on` line is printed, so a tool that signals as soon as it reads
//! that line is heard rather than killed by the default action.

use std::future::Future;

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
        Ok(Self::when(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        }))
    }

    /// A latch set when `trigger` completes: what [`Shutdown::listen`] builds on, and how a
    /// test (or an embedding program) ends a service it runs in-process. Call it inside
    /// the runtime.
    pub fn when(trigger: impl Future<Output = ()> + Send + 'static) -> Self {
        let (latch, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            trigger.await;
            latch.send_replace(true);
            // Keep the sender: a dropped sender would read as a shutdown to nobody.
            std::future::pending::<()>().await;
        });
        Self(shutdown)
    }

    /// Completes once a shutdown was requested (at once if it already was).
    pub async fn requested(&mut self) {
        if self.0.wait_for(|&stop| stop).await.is_err() {
            // The sender is gone: no shutdown can ever come.
            std::future::pending::<()>().await;
        }
    }

    /// [`Shutdown::requested`] for a caller that wants an owned future (the accept loop).
    pub async fn wait(mut self) {
        self.requested().await;
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn every_handle_sees_a_request_made_before_it_looked() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Shutdown::when(async {
            let _ = rx.await;
        });
        let mut early = shutdown.clone();
        assert!(!shutdown.is_requested());
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), early.requested())
            .await
            .expect("the latch is set");
        assert!(shutdown.is_requested());
        tokio::time::timeout(Duration::from_secs(5), shutdown.wait())
            .await
            .expect("a late look completes at once");
    }
}
