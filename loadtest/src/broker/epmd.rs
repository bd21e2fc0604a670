//! Our own epmd (Erlang's port mapper), started before any broker that registers with it.
//!
//! A single broker has one of its own; the nodes of a cluster share one, because a node
//! finds its peers' distribution ports through the epmd on their host — all of them on
//! `ERL_EPMD_PORT` here.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::child::Supervised;

use super::install::Installation;
use super::options::{EPMD_GRACE, Failure, INSTALL_HINT, PROBE_TIMEOUT};
use super::output::{open_append, read_from, tail_note};
use super::ports::mentions_port_taken;
use super::ready::seconds_text;

/// Starts `epmd -port PORT -address 127.0.0.1` with its output in `dir/epmd.log`, and
/// waits until it listens. With a `link` (`--network`) it runs in the host's namespace
/// and listens on the host's address too, where the lab checks it.
pub(super) fn start_epmd(
    installation: &Installation,
    port: u16,
    link: Option<&crate::network::HostLink>,
    dir: &Path,
    cancel: &AtomicBool,
) -> Result<Supervised, Failure> {
    let log = dir.join("epmd.log");
    let output = open_append(&log).map_err(Failure::Other)?;
    let offset = output.metadata().map(|m| m.len()).unwrap_or(0);
    let stdout = output
        .try_clone()
        .map_err(|e| Failure::Other(format!("cannot use {}: {e}", log.display())))?;
    let mut command = Command::new(&installation.epmd);
    command
        .arg("-port")
        .arg(port.to_string())
        .arg("-address")
        .arg(match link {
            Some(l) => format!("127.0.0.1,{}", l.address),
            None => "127.0.0.1".into(),
        })
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        // In the data directory, like the broker: no process of ours holds another
        // directory open, and a leftover is easy to find.
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(output));
    if let Some(link) = link {
        link.netns.enter_on_exec(&mut command);
    }
    let epmd = Supervised::spawn("epmd", command).map_err(|e| {
        Failure::Other(format!(
            "cannot start {}: {e}; check that Erlang is installed ({INSTALL_HINT})",
            installation.epmd.display()
        ))
    })?;
    let ip = link.map_or(Ipv4Addr::LOCALHOST, |l| l.address);
    let waiting = Waiting {
        installation,
        addr: SocketAddr::from((ip, port)),
        log: &log,
        offset,
    };
    waiting.until_listening(&epmd, cancel)?;
    Ok(epmd)
}

/// One epmd start's wait: where it should listen and where its output is.
struct Waiting<'a> {
    installation: &'a Installation,
    addr: SocketAddr,
    log: &'a Path,
    offset: u64,
}

impl Waiting<'_> {
    /// Waits until `epmd` listens, at most [`EPMD_GRACE`]; kills it if it does not (or if
    /// the start is cancelled). A failure quotes its output.
    fn until_listening(&self, epmd: &Supervised, cancel: &AtomicBool) -> Result<(), Failure> {
        let addr = self.addr;
        let deadline = Instant::now() + EPMD_GRACE;
        loop {
            if TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok() {
                return Ok(());
            }
            if let Some(how) = epmd.ended() {
                return Err(self.failed(format!("{how} instead of listening on {addr}")));
            }
            if cancel.load(Ordering::SeqCst) {
                epmd.terminate(Duration::ZERO);
                return Err(Failure::Cancelled);
            }
            if Instant::now() >= deadline {
                epmd.terminate(Duration::ZERO);
                return Err(self.failed(format!(
                    "did not listen on {addr} within {}, so it was killed",
                    seconds_text(EPMD_GRACE)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn failed(&self, why: String) -> Failure {
        let said = read_from(self.log, self.offset);
        let message = format!(
            "epmd ({}) {why}{}",
            self.installation.epmd.display(),
            tail_note(&said, "its output ends")
        );
        if mentions_port_taken(&said) {
            Failure::PortTaken(message)
        } else {
            Failure::Other(message)
        }
    }
}
