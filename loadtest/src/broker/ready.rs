//! Readiness: the broker counts as started once it completes an AMQP handshake.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::child::Supervised;

use super::options::{Failure, PROBE_EVERY, PROBE_TIMEOUT, PROGRESS_EVERY};
use super::output::{Output, tail_note};
use super::ports::mentions_port_taken;

/// Probes until the broker completes an AMQP handshake, it exits, the timeout passes or
/// the start is cancelled. Kills it in the last two cases.
#[allow(clippy::too_many_arguments)]
pub(super) fn wait_until_ready(
    beam: &Supervised,
    node: &str,
    port: u16,
    started: Instant,
    timeout: Duration,
    progress: bool,
    cancel: &AtomicBool,
    output: &Output,
) -> Result<(), Failure> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let url = format!("amqp://guest:guest@{addr}/%2f");
    let mut next_progress = started + PROGRESS_EVERY;
    let mut last_refusal = String::from("its AMQP port did not accept connections yet");
    loop {
        if let Some(how) = beam.ended() {
            let said = output.read();
            let message = format!(
                "RabbitMQ (node {node}) {how} before it was ready{}",
                tail_note(&said, "its output ends")
            );
            return Err(if mentions_port_taken(&said) {
                Failure::PortTaken(message)
            } else {
                Failure::Other(message)
            });
        }
        if cancel.load(Ordering::SeqCst) {
            beam.terminate(Duration::ZERO);
            return Err(Failure::Cancelled);
        }
        let waited = started.elapsed();
        if waited >= timeout {
            beam.terminate(Duration::ZERO);
            let said = output.read();
            return Err(Failure::Other(format!(
                "RabbitMQ (node {node}) was not ready within {} ({last_refusal}), so it was killed; \
                 raise the ready timeout on a slow machine{}",
                seconds_text(timeout),
                tail_note(&said, "its output ends")
            )));
        }
        if progress && Instant::now() >= next_progress {
            eprintln!(
                "loadtest: waiting for RabbitMQ on {addr}: {:.0} s so far (usually 4–13 s; {last_refusal})",
                waited.as_secs_f64()
            );
            next_progress += PROGRESS_EVERY;
        }
        let probe_timeout = PROBE_TIMEOUT.min(timeout.saturating_sub(waited));
        match TcpStream::connect_timeout(&addr, probe_timeout.max(Duration::from_millis(10))) {
            Err(e) => last_refusal = format!("its AMQP port: {e}"),
            Ok(stream) => {
                drop(stream);
                match amqp_handshake(&url, probe_timeout) {
                    Ok(()) => return Ok(()),
                    Err(e) => last_refusal = format!("the AMQP handshake: {e}"),
                }
            }
        }
        std::thread::sleep(PROBE_EVERY);
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
