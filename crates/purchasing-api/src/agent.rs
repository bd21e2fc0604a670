//! HAProxy's agent check (`--haproxy-agent-bind ADDR`): a TCP port on which every
//! connection is answered with one line, `maxconn:N`, and closed. HAProxy polls it
//! (`agent-check agent-port …` on the server line) and sets the node's `maxconn` to N.
//!
//! Why: a balancer's per-node `maxconn` written once into its configuration cannot follow
//! an adaptive admission limit. When HAProxy lets through more than the node's limit
//! stands at, the excess waits in HAProxy's queue first and is refused by the node after
//! all — a slow refusal; when it lets through less, the node idles. The node is the one
//! that knows what it takes now, so it says so, the way HAProxy's agent protocol intends.
//! Failing to reach the agent is not a failed health check for HAProxy: `/health` stays
//! what decides whether the node is in rotation.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;

/// Binds the agent's port; a clear error when it cannot.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for HAProxy's agent check on {addr} (--haproxy-agent-bind): is the port in use?")
    })
}

/// The line the agent sends for a limit of `n` orders at once (at least 1: HAProxy reads
/// `maxconn:0` as "no limit").
pub fn response(n: usize) -> String {
    format!("maxconn:{}\n", n.max(1))
}

/// Answers every connection with [`response`] of `limit()` at that moment, until the
/// runtime stops. Errors of one connection end that connection only.
pub async fn serve(listener: TcpListener, limit: impl Fn() -> usize + Send + 'static) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: try again shortly, never spin.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let line = response(limit());
        // One short line fits any socket buffer: written once it is writable, then the
        // connection is dropped (closed), which tells HAProxy the answer is complete.
        tokio::spawn(async move {
            if stream.writable().await.is_ok() {
                let _ = stream.try_write(line.as_bytes());
            }
            drop(stream);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_line_is_haproxys_maxconn_word_and_never_zero() {
        assert_eq!(response(5), "maxconn:5\n");
        assert_eq!(response(0), "maxconn:1\n");
    }

    #[tokio::test]
    async fn each_connection_gets_the_limit_in_force_then() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(4));
        let read = limit.clone();
        tokio::spawn(serve(listener, move || {
            read.load(std::sync::atomic::Ordering::Relaxed)
        }));
        for expected in [4, 2] {
            limit.store(expected, std::sync::atomic::Ordering::Relaxed);
            let text = tokio::task::spawn_blocking(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                let mut text = String::new();
                stream.read_to_string(&mut text).unwrap();
                text
            })
            .await
            .unwrap();
            assert_eq!(text, format!("maxconn:{expected}\n"));
        }
    }
}
