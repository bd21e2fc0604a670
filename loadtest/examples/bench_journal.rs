//! What the idempotency journal costs at scale: writing N keyed orders through the store,
//! then opening the store on them again (recovery), each in a process of its own so its
//! memory is its own. Prints one line per phase: keys, seconds, resident memory.
//!
//!   cargo run --release -p loadtest --example bench_journal -- write 1000000 DIR
//!   cargo run --release -p loadtest --example bench_journal -- recover DIR
//!
//! DIR must not exist for `write` (it is created); both leave it in place.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use purchasing_persistence::{
    IdempotencyKey, ItemCode, PurchaseOrderStore, StoreOptions, SubmitOptions, Workload,
};

const KEYED: StoreOptions = StoreOptions {
    durable: false,
    idempotency: true,
    max_concurrent_fills: None,
};

/// No work per order: this measures the journal and the file, nothing else.
const NULL: Workload = Workload {
    alloc_chars: 0,
    delay: Duration::ZERO,
    release_early: false,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["write", n, dir] => n
            .parse()
            .map_err(|_| format!("not a count: {n}"))
            .and_then(|n| write(n, Path::new(dir))),
        ["recover", dir] => recover(Path::new(dir)),
        _ => Err("usage: bench_journal write N DIR | recover DIR".into()),
    };
    if let Err(error) = result {
        eprintln!("bench_journal: {error}");
        std::process::exit(2);
    }
}

fn write(n: u64, dir: &Path) -> Result<(), String> {
    std::fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let store = open(dir)?;
    let started = Instant::now();
    for i in 0..n {
        let key = IdempotencyKey::parse(&format!("key-{i:012}")).map_err(|e| e.to_string())?;
        let code = ItemCode::parse(format!("code-{i}")).map_err(|e| e.to_string())?;
        let options = SubmitOptions {
            deadline: None,
            key: Some(&key),
        };
        store.submit(&code, options).map_err(|e| e.to_string())?;
    }
    report("write", store.keys_known(), started.elapsed());
    Ok(())
}

fn recover(dir: &Path) -> Result<(), String> {
    let started = Instant::now();
    let store = open(dir)?;
    report("recover", store.keys_known(), started.elapsed());
    Ok(())
}

fn open(dir: &Path) -> Result<PurchaseOrderStore, String> {
    PurchaseOrderStore::open_with(dir.join("PurchaseOrders.txt"), NULL, KEYED)
        .map_err(|e| e.to_string())
}

fn report(phase: &str, keys: usize, took: Duration) {
    let rss = common::status_kib("VmRSS:");
    println!(
        "{phase:8} keys {keys:>10}  {:>8.2} s  resident {:>7.1} MiB  ({:.0} bytes per key)",
        took.as_secs_f64(),
        rss as f64 / 1024.0,
        rss as f64 * 1024.0 / keys.max(1) as f64
    );
}
