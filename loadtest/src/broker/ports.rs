//! Free loopback ports for the broker (AMQP, distribution, epmd), and recognising a port
//! another process took first.

use std::net::{Ipv4Addr, TcpListener};

use super::options::BrokerError;

/// The three loopback ports a broker needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ports {
    pub(super) amqp: u16,
    pub(super) dist: u16,
    pub(super) epmd: u16,
}

impl Ports {
    /// Three free ports, held open together while picked so that they differ.
    pub(super) fn pick() -> Result<Ports, BrokerError> {
        let bind = || {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| {
                BrokerError::Setup(format!(
                    "cannot find a free port on 127.0.0.1 for the broker: {e}; check the loopback interface is up"
                ))
            })
        };
        let listeners = [bind()?, bind()?, bind()?];
        let port = |l: &TcpListener| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| BrokerError::Setup(format!("cannot read a picked port's number: {e}")))
        };
        Ok(Ports {
            amqp: port(&listeners[0])?,
            dist: port(&listeners[1])?,
            epmd: port(&listeners[2])?,
        })
    }
}

/// Whether nothing listens on loopback `port` now (we can bind it).
pub(super) fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Whether output says an address was in use (the race between picking and binding).
pub(super) fn mentions_port_taken(output: &str) -> bool {
    let lower = output.to_lowercase();
    lower.contains("eaddrinuse") || lower.contains("address already in use")
}
