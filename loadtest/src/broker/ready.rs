//! Readiness: the broker counts as started once it completes an AMQP handshake.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::child::Supervised;

use super::options::{Failure, PROBE_EVERY, PROBE_TIMEOUT, PROGRESS_EVERY};
use super::output::{Output, tail_note};
use super::ports::mentions_port_taken;

/// One start's wait for readiness: the broker's process, where it should answer, how
/// long it may take, and whether to report progress or give up on request.
pub(super) struct Readiness<'a> {
    pub(super) beam: &'a Supervised,
    pub(super) node: &'a str,
    /// The AMQP listener probed.
    pub(super) addr: SocketAddr,
    pub(super) started: Instant,
    pub(super) timeout: Duration,
    pub(super) progress: bool,
    pub(super) cancel: &'a AtomicBool,
    /// This start's output, quoted when the broker fails.
    pub(super) output: &'a Output,
}

impl Readiness<'_> {
    /// Probes until the broker completes an AMQP handshake, it exits, the timeout passes
    /// or the start is cancelled. Kills it in the last two cases.
    pub(super) fn wait(&self) -> Result<(), Failure> {
        let addr = self.addr;
        let mut next_progress = self.started + PROGRESS_EVERY;
        let mut last_refusal = String::from("its AMQP port did not accept connections yet");
        loop {
            if let Some(how) = self.beam.ended() {
                return Err(self.died(&how));
            }
            if self.cancel.load(Ordering::SeqCst) {
                self.beam.terminate(Duration::ZERO);
                return Err(Failure::Cancelled);
            }
            let waited = self.started.elapsed();
            if waited >= self.timeout {
                return Err(self.give_up(&last_refusal));
            }
            if self.progress && Instant::now() >= next_progress {
                eprintln!(
                    "loadtest: waiting for RabbitMQ on {addr}: {:.0} s so far (usually 4–13 s; {last_refusal})",
                    waited.as_secs_f64()
                );
                next_progress += PROGRESS_EVERY;
            }
            match self.probe(addr, waited) {
                Ok(()) => return Ok(()),
                Err(why) => last_refusal = why,
            }
            std::thread::sleep(PROBE_EVERY);
        }
    }

    /// One probe, within what is left of the timeout: a TCP connect (cheap, so a closed
    /// port costs no handshake), then an AMQP handshake; why it failed otherwise.
    fn probe(&self, addr: SocketAddr, waited: Duration) -> Result<(), String> {
        let probe_timeout = PROBE_TIMEOUT.min(self.timeout.saturating_sub(waited));
        let stream =
            TcpStream::connect_timeout(&addr, probe_timeout.max(Duration::from_millis(10)))
                .map_err(|e| format!("its AMQP port: {e}"))?;
        drop(stream);
        amqp_handshake(&format!("amqp://guest:guest@{addr}/%2f"), probe_timeout)
            .map_err(|e| format!("the AMQP handshake: {e}"))
    }

    /// The broker ended by itself (`how`) before it was ready.
    fn died(&self, how: &str) -> Failure {
        let said = self.output.read();
        let message = format!(
            "RabbitMQ (node {}) {how} before it was ready{}",
            self.node,
            tail_note(&said, "its output ends")
        );
        if mentions_port_taken(&said) {
            Failure::PortTaken(message)
        } else {
            Failure::Other(message)
        }
    }

    /// Kills a broker not ready in time and says what the last probe met.
    fn give_up(&self, last_refusal: &str) -> Failure {
        self.beam.terminate(Duration::ZERO);
        let said = self.output.read();
        Failure::Other(format!(
            "RabbitMQ (node {}) was not ready within {} ({last_refusal}), so it was killed; \
             raise the ready timeout on a slow machine{}",
            self.node,
            seconds_text(self.timeout),
            tail_note(&said, "its output ends")
        ))
    }
}

/// "60 s", "0.5 s".
pub(super) fn seconds_text(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds.fract() == 0.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{seconds:.1} s")
    }
}

/// Opens an AMQP connection and a channel, then closes them. On a thread of its own with
/// its own small runtime, so it works whether or not the caller is inside a tokio runtime.
pub(super) fn amqp_handshake(url: &str, timeout: Duration) -> Result<(), String> {
    let url = url.to_string();
    let probe = std::thread::Builder::new()
        .name("broker-probe".to_string())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime for the probe: {e}"))?;
            runtime.block_on(async {
                let attempt = async {
                    let connection =
                        lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                            .await
                            .map_err(|e| format!("connect: {e}"))?;
                    let channel = connection
                        .create_channel()
                        .await
                        .map_err(|e| format!("open a channel: {e}"))?;
                    channel
                        .close(200, "readiness probe".into())
                        .await
                        .map_err(|e| format!("close the channel: {e}"))?;
                    connection
                        .close(200, "readiness probe".into())
                        .await
                        .map_err(|e| format!("close the connection: {e}"))
                };
                tokio::time::timeout(timeout, attempt)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
            })
        })
        .map_err(|e| format!("cannot start the probe thread: {e}"))?;
    probe
        .join()
        .unwrap_or_else(|_| Err("the probe thread panicked".to_string()))
}
