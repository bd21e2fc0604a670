//! Which broker node a publisher connects to: the list it was given, and where in that
//! list the next connect starts.
//!
//! Why each rule:
//!
//! * **In order, each node once per connect**, the first that takes the session wins: a
//!   list is the operator's preference (the local node first, say), and one pass bounds
//!   a connect in count — with a list of one, exactly the single connect of before.
//! * **Starting after the last node that failed**: a node whose connection was just lost
//!   (or that refused the last connect) is most likely still down, and trying it first
//!   would cost every caller a failed handshake — or, for a node that drops packets, a
//!   whole [`NODE_CONNECT_TIMEOUT`]. The cursor is shared by every clone of the manager,
//!   so one caller's discovery spares the others.
//! * **A time limit per node** ([`NODE_CONNECT_TIMEOUT`], when there are others to try):
//!   a node that accepts and never answers must not take the call's whole deadline while
//!   a healthy node waits further down the list. The call's deadline bounds the pass.
//! * **A queue declared with other properties ends the search**: every node of a cluster
//!   holds the same queue, so trying the others would only repeat the refusal.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amqp_link::AmqpUrls;
use tokio::time::Instant;
use wire_contract::amqp::Delivery as DeliveryMode;

use super::session::Session;
use crate::error::ReplenishmentError;

/// Longest one node may take to connect, open the channel and declare the queues while
/// other nodes are left to try. A handshake on a LAN takes milliseconds and a loaded
/// broker well under a second; five seconds leaves most of the default 30 s deadline for
/// the rest of the list.
pub const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The brokers and the cursor; cheap to clone, clones share the cursor.
#[derive(Debug, Clone)]
pub(super) struct Nodes {
    urls: AmqpUrls,
    /// The node the next connect tries first: the one after the last that failed, or the
    /// one connected to last.
    next: Arc<AtomicUsize>,
}

impl Nodes {
    pub(super) fn new(urls: AmqpUrls) -> Self {
        Nodes {
            urls,
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(super) fn urls(&self) -> &AmqpUrls {
        &self.urls
    }

    /// The session on `node` was lost: the next connect starts after it. Only if no
    /// other caller has moved the cursor since — many calls learn of one loss at once,
    /// and the node after it must not be skipped too.
    pub(super) fn lost(&self, node: usize) {
        let after = (node + 1) % self.urls.len();
        let _ = self
            .next
            .compare_exchange(node, after, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Opens a session on the first node that takes one, each tried once, starting at
    /// the cursor (see the module doc). `after` is the call's timeout, for its errors.
    pub(super) async fn open(
        &self,
        mode: DeliveryMode,
        deadline: Instant,
        after: Duration,
    ) -> Result<Session, ReplenishmentError> {
        let count = self.urls.len();
        let start = self.next.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for step in 0..count {
            let node = (start + step) % count;
            let url = self.urls.cycle(node);
            // Alone, a node has the whole deadline (and its timeout is the call's).
            let limit = Instant::now() + NODE_CONNECT_TIMEOUT;
            let (node_deadline, node_after) = if count > 1 && limit < deadline {
                (limit, NODE_CONNECT_TIMEOUT)
            } else {
                (deadline, after)
            };
            match Session::open(url, node, mode, node_deadline, node_after).await {
                Ok(session) => {
                    self.next.store(node, Ordering::Relaxed);
                    return Ok(session);
                }
                Err(error) => {
                    self.next.store((node + 1) % count, Ordering::Relaxed);
                    let out_of_time = node_deadline == deadline
                        && matches!(error, ReplenishmentError::AmqpTimedOut { .. });
                    if out_of_time || matches!(error, ReplenishmentError::QueueMismatch { .. }) {
                        return Err(error);
                    }
                    failures.push((url.to_string(), error));
                }
            }
        }
        Err(none_connected(failures))
    }
}

/// The error of a pass in which no node took the session: a single node's own error (as
/// with one URL), the last refusal when every node refused the login, else one error
/// naming each node and why.
fn none_connected(mut failures: Vec<(String, ReplenishmentError)>) -> ReplenishmentError {
    let all_refused = failures
        .iter()
        .all(|(_, f)| matches!(f, ReplenishmentError::AmqpRefused { .. }));
    if failures.len() > 1 && !all_refused {
        let reasons: Vec<String> = failures
            .iter()
            .map(|(url, error)| format!("{url}: {}", node_failure(error)))
            .collect();
        return ReplenishmentError::AmqpUnreachable {
            count: failures.len(),
            reasons: reasons.join("; "),
        };
    }
    match failures.pop() {
        Some((_, error)) => error,
        // Not reached: a list has at least one node, and each is tried.
        None => ReplenishmentError::AmqpUnreachable {
            count: 0,
            reasons: "no broker URL to try".to_owned(),
        },
    }
}

/// Why one node did not take the session, short: its part of
/// [`ReplenishmentError::AmqpUnreachable`].
fn node_failure(error: &ReplenishmentError) -> String {
    match error {
        ReplenishmentError::AmqpConnect { reason, .. }
        | ReplenishmentError::ConnectionLost { reason, .. } => reason.clone(),
        ReplenishmentError::AmqpRefused { reason, .. } => format!("refused: {reason}"),
        ReplenishmentError::AmqpTimedOut { after, stage } => {
            format!("no answer within {after:?} while {stage}")
        }
        ReplenishmentError::ChannelClosed { reason } => format!("closed the channel: {reason}"),
        other => other.to_string(),
    }
}
