//! Real sockets on 127.0.0.1 with hand-written peers: each failure class is produced the
//! way it happens in the field, without the purchasing API.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::transport::Transport;
use super::*;
use crate::amqp::DeliveryMode;
use crate::amqp_url::AmqpUrl;
use crate::base_url::BaseUrl;
use crate::error::{ConfigError, ReplenishmentError};
use crate::retry::{RetryBudget, RetryPolicy};
use crate::wire;

mod amqp;
mod http;
mod retries;

/// Upper bound for any socket wait in these tests, so a regression fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(10);

/// Reads one HTTP/1.1 request (headers and a `Content-Length` body); `None` at EOF.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + length {
                return Some(String::from_utf8_lossy(&data[..end + 4 + length]).into_owned());
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// A peer that accepts connections for at most [`LIMIT`] and answers every request on
/// each with `response`, or closes after reading it when `response` is `None`. Sends the
/// requests it read, and the number of connections accepted, to the test.
struct Peer {
    addr: SocketAddr,
    requests: mpsc::Receiver<String>,
    connections: mpsc::Receiver<usize>,
}

fn peer(response: Option<String>) -> Peer {
    scripted_peer(vec![response], Duration::ZERO)
}

/// A peer whose n-th request (counted over all connections, from 0) gets `script[n]`,
/// or the script's last entry once it has run out, after waiting `delay`.
fn scripted_peer(script: Vec<Option<String>>, delay: Duration) -> Peer {
    assert!(!script.is_empty());
    let script = Arc::new(script);
    let served = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (requests_tx, requests) = mpsc::channel();
    let (connections_tx, connections) = mpsc::channel();
    thread::spawn(move || {
        let deadline = Instant::now() + LIMIT;
        let mut accepted = 0;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    accepted += 1;
                    let _ = connections_tx.send(accepted);
                    stream.set_nonblocking(false).unwrap();
                    let requests_tx = requests_tx.clone();
                    let (script, served) = (script.clone(), served.clone());
                    thread::spawn(move || {
                        while let Some(request) = read_request(&mut stream) {
                            let n = served.fetch_add(1, Ordering::SeqCst);
                            let _ = requests_tx.send(request);
                            thread::sleep(delay);
                            let Some(response) = &script[n.min(script.len() - 1)] else {
                                return;
                            };
                            if stream.write_all(response.as_bytes()).is_err() {
                                return;
                            }
                        }
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(2))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    Peer {
        addr,
        requests,
        connections,
    }
}

fn manager(addr: SocketAddr) -> StockManager {
    StockManager::new(&format!("http://{addr}")).unwrap()
}

const CREATED: &str = "HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n";

/// A complete response with `body` and the right `content-length`.
fn response(status_line: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status_line}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn status(status_line: &str, extra_headers: &str) -> Option<String> {
    Some(format!(
        "HTTP/1.1 {status_line}\r\n{extra_headers}content-length: 0\r\n\r\n"
    ))
}

/// The value of header `name` (lower case) in a request as the peer read it.
fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn received(peer: &Peer) -> Vec<String> {
    peer.requests.try_iter().collect()
}
