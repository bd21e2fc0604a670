//! HAProxy's per-request log as the generated configuration writes it: which node
//! answered each request id, with what status, and HAProxy's timers.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

/// One request as HAProxy logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub request_id: String,
    /// The node that answered, or `None` when HAProxy answered itself (`<NOSRV>`: its
    /// bounded queue was full, or no node was up).
    pub node: Option<String>,
    /// The status sent to the client (-1 when the client went away first).
    pub status: i32,
    /// HAProxy's retries of this request (`%rc`; a `+` means redispatched).
    pub retries: String,
    /// HAProxy's termination state (`%tsc`): `----` when the exchange ended normally,
    /// else who ended it and when (e.g. `SC--`: the node refused the connection).
    pub flags: String,
    /// The node's response time (`%Tr`) and HAProxy's total active time (`%Ta`), in
    /// milliseconds; -1 when HAProxy did not get that far.
    pub node_ms: i64,
    pub total_ms: i64,
    /// Time it waited in HAProxy's queue for a free node slot (`%Tw`), -1 if never queued
    /// to the end.
    pub queue_ms: i64,
}

impl LoggedRequest {
    /// Whether a node answered (the exchange ended normally, `----`), rather than HAProxy
    /// itself (its queue full or timed out, no node up, a node that refused or dropped
    /// the connection: HAProxy then answers 503 or 502 in the node's name).
    pub fn answered_by_node(&self) -> bool {
        self.node.is_some() && self.flags.starts_with('-')
    }

    /// HAProxy's own share of the request's time, the hop: its total minus the node's
    /// response time and minus the wait in its queue (receiving the request, connecting,
    /// relaying the answer), when known.
    pub fn own_time_ms(&self) -> Option<f64> {
        let queued = self.queue_ms.max(0);
        (self.node_ms >= 0 && self.total_ms >= self.node_ms + queued)
            .then(|| (self.total_ms - self.node_ms - queued) as f64)
    }
}

/// Parses the log lines the generated configuration asks for.
pub fn parse_log_line(line: &str) -> Option<LoggedRequest> {
    let mut request_id = None;
    let mut node = None;
    let mut status = None;
    let mut retries = String::new();
    let mut flags = String::new();
    let (mut node_ms, mut total_ms, mut queue_ms) = (-1, -1, -1);
    for field in line.split_whitespace() {
        if let Some(v) = field.strip_prefix("rid=") {
            request_id = Some(v.trim_matches(['{', '}']).to_string());
        } else if let Some(v) = field.strip_prefix("node=") {
            node = Some((v != "<NOSRV>").then(|| v.to_string()));
        } else if let Some(v) = field.strip_prefix("status=") {
            status = v.parse().ok();
        } else if let Some(v) = field.strip_prefix("retries=") {
            retries = v.to_string();
        } else if let Some(v) = field.strip_prefix("flags=") {
            flags = v.to_string();
        } else if let Some(v) = field.strip_prefix("tr=") {
            node_ms = v.parse().unwrap_or(-1);
        } else if let Some(v) = field.strip_prefix("tw=") {
            queue_ms = v.parse().unwrap_or(-1);
        } else if let Some(v) = field.strip_prefix("ta=") {
            total_ms = v.parse().unwrap_or(-1);
        }
    }
    Some(LoggedRequest {
        request_id: request_id?,
        node: node?,
        status: status?,
        retries,
        flags,
        node_ms,
        total_ms,
        queue_ms,
    })
}

/// Per request id, every time HAProxy logged it (a client retry is logged again).
pub fn node_per_request(log: &Path) -> io::Result<HashMap<String, Vec<LoggedRequest>>> {
    let mut per_request: HashMap<String, Vec<LoggedRequest>> = HashMap::new();
    for line in BufReader::new(File::open(log)?).lines() {
        if let Some(logged) = parse_log_line(&line?) {
            per_request
                .entry(logged.request_id.clone())
                .or_default()
                .push(logged);
        }
    }
    Ok(per_request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_name_the_node_or_the_balancer_itself() {
        let line = "rid={r-1} node=api1 status=201 tw=0 tr=601 ta=602 retries=0 flags=----";
        let logged = parse_log_line(line).unwrap();
        assert_eq!(logged.request_id, "r-1");
        assert_eq!(logged.node.as_deref(), Some("api1"));
        assert_eq!(logged.status, 201);
        assert_eq!(logged.own_time_ms(), Some(1.0));
        let refused = parse_log_line(
            "rid={r-2} node=<NOSRV> status=503 tw=-1 tr=-1 ta=0 retries=0 flags=PR--",
        )
        .unwrap();
        assert_eq!(refused.node, None);
        assert!(!refused.answered_by_node());
        assert!(logged.answered_by_node());
        let dead = parse_log_line(
            "rid={r-3} node=api0 status=503 tw=0 tr=-1 ta=1001 retries=2 flags=SC--",
        )
        .unwrap();
        assert!(
            !dead.answered_by_node(),
            "HAProxy's 503 after the node refused connections"
        );
        assert_eq!(parse_log_line("[WARNING] Server nodes/api0 is DOWN"), None);
    }
}
