//! How many orders a second one orders file can take, whatever the nodes in front of it:
//! the ceiling a scaled-out system meets once every node appends to the same file under
//! its lock (docs/scale-out.md). The work of an order is taken away (1 character, no
//! sleep), so what is left is the append: the in-process mutex, the OS file lock and the
//! write — plus, with `durable`, the sync to disk.
//!
//!     cargo run --release -p purchasing-persistence --example append_ceiling -- [PROCESSES] [SECONDS] [durable]
//!
//! Runs PROCESSES copies of itself (as several nodes would be), each with 4 threads
//! submitting as fast as they can for SECONDS, all to one file in a temporary directory,
//! then counts the lines and prints appends per second.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use purchasing_persistence::{
    ItemCode, PurchaseOrderStore, StoreOptions, Workload, read_orders_file,
};

const THREADS_PER_PROCESS: usize = 4;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(
            PathBuf::from(&args[2]),
            args[3].parse().unwrap(),
            args[4] == "durable",
        );
        return;
    }
    let processes: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let seconds: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let durable = args.get(3).is_some_and(|a| a == "durable");
    let dir = std::env::temp_dir().join(format!("append-ceiling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let file = dir.join("PurchaseOrders.txt");
    let exe = std::env::current_exe().expect("current_exe");
    let started = Instant::now();
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .arg("--child")
                .arg(&file)
                .arg(seconds.to_string())
                .arg(if durable { "durable" } else { "page-cache" })
                .spawn()
                .expect("start a child")
        })
        .collect();
    for mut child in children {
        child.wait().expect("child");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let lines = read_orders_file(&file).expect("read back").orders.len();
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{processes} processes × {THREADS_PER_PROCESS} threads, {}: {lines} appends in {elapsed:.2} s = {:.0}/s",
        if durable {
            "durable (synced)"
        } else {
            "page cache"
        },
        lines as f64 / seconds
    );
}

fn child(file: PathBuf, seconds: f64, durable: bool) {
    let workload = Workload {
        alloc_chars: 1,
        delay: Duration::ZERO,
        release_early: false,
    };
    let options = StoreOptions {
        durable,
        ..StoreOptions::default()
    };
    let store = PurchaseOrderStore::open_with(&file, workload, options).expect("open the store");
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    std::thread::scope(|scope| {
        for t in 0..THREADS_PER_PROCESS {
            let store = &store;
            scope.spawn(move || {
                let mut n = 0u64;
                while Instant::now() < until {
                    let code = ItemCode::parse(format!("P{}-T{t}-{n}", std::process::id()))
                        .expect("a valid code");
                    store.submit_purchase_order(&code).expect("append");
                    n += 1;
                }
            });
        }
    });
}
