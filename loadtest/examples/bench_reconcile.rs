//! What reconciliation costs at scale: N acknowledged requests (fresh UUIDs, as the lab
//! sends) and an orders file holding each of them once; then the lab's own reading and
//! classifying of that file, timed, with this process's peak memory. One N per process, so
//! the peak is that N's.
//!
//!   cargo run --release -p loadtest --example bench_reconcile -- 1000000 /var/tmp/orders.txt

mod common;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use loadtest::reconcile::{FileMark, SentCodes};
use purchasing_persistence::{ItemCode, order_line};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(path)) = (
        args.first().and_then(|n| n.parse::<u64>().ok()),
        args.get(1),
    ) else {
        eprintln!("usage: bench_reconcile N ORDERS_FILE (the file is overwritten)");
        std::process::exit(2);
    };
    if let Err(error) = run(n, Path::new(path)) {
        eprintln!("bench_reconcile: {error}");
        std::process::exit(1);
    }
}

fn run(n: u64, path: &Path) -> Result<(), String> {
    let mut sent = SentCodes::default();
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    for _ in 0..n {
        let code = uuid::Uuid::new_v4();
        sent.insert(code, true);
        let item = ItemCode::parse(code.to_string()).map_err(|e| e.to_string())?;
        out.write_all(order_line::format_line(&item).as_bytes())
            .map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    let before = common::status_kib("VmRSS:");

    let started = Instant::now();
    let counts = FileMark { len: 0 }
        .reconcile_since(&sent, path)
        .map_err(|e| e.to_string())?;
    let took = started.elapsed();
    assert_eq!(counts.acknowledged_persisted, n, "{counts:?}");
    println!(
        "reconcile {n:>10} orders  {:>7.2} s  ({:.2} µs per order)  peak {:>7.1} MiB \
         (requests held before: {:.1} MiB)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n.max(1) as f64,
        common::status_kib("VmHWM:") as f64 / 1024.0,
        before as f64 / 1024.0
    );
    Ok(())
}
