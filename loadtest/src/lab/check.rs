//! The checker: every order the client sent, against the lines the run added to the
//! orders file ([`crate::reconcile`]); with messaging, acknowledged orders still in the
//! queue are told apart from lost ones ([`split_absent`]).

use std::path::Path;
use std::time::Duration;

use crate::messaging::split_absent;
use crate::reconcile::{FileMark, SentCodes};
use crate::report::Reconciliation;

/// Reconciles `sent` against what was appended to `orders_file` after `mark`.
/// `still_ready`: messaging runs, the messages left in the queue (`Some(None)`: the broker
/// did not say). `settle`: how long the settle step took, for the report.
pub(super) fn check_orders(
    sent: &SentCodes,
    orders_file: Option<&Path>,
    mark: std::io::Result<Option<FileMark>>,
    still_ready: Option<Option<u64>>,
    settle: Duration,
) -> Reconciliation {
    let Some(path) = orders_file else {
        return unavailable(
            None,
            "no orders file: pass --orders-file with a path readable here (or --spawn-server)"
                .into(),
        );
    };
    let mark = match mark {
        Ok(Some(mark)) => mark,
        Ok(None) => return unavailable(Some(path), "no mark was taken before the load".into()),
        Err(e) => return unavailable(Some(path), format!("cannot read {}: {e}", path.display())),
    };
    let c = match mark.reconcile_since(sent, path) {
        Ok(counts) => counts,
        Err(e) => return unavailable(Some(path), e.to_string()),
    };
    let (lost, still_queued) = match still_ready {
        Some(ready) => {
            let (lost, queued) = split_absent(c.lost, ready);
            (lost, Some(queued))
        }
        None => (c.lost, None),
    };
    Reconciliation {
        available: true,
        unavailable_reason: None,
        orders_file: Some(path.display().to_string()),
        acknowledged_persisted: Some(c.acknowledged_persisted),
        lost: Some(lost),
        still_queued,
        ghost: Some(c.ghost),
        failed_absent: Some(c.failed_absent),
        duplicates: Some(c.duplicates),
        unexpected: Some(c.unexpected),
        malformed_lines: Some(c.malformed_lines),
        settle_s: Some(settle.as_secs_f64()),
    }
}

fn unavailable(path: Option<&Path>, reason: String) -> Reconciliation {
    Reconciliation {
        available: false,
        unavailable_reason: Some(reason),
        orders_file: path.map(|p| p.display().to_string()),
        ..Default::default()
    }
}
