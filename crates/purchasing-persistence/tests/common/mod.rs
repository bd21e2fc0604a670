//! Shared helpers for the protections' tests: tiny workloads on real files.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use purchasing_persistence::{
    IdempotencyKey, ItemCode, PurchaseOrderStore, StoreOptions, SubmitOptions, Workload,
    read_orders_file,
};

pub fn tiny() -> Workload {
    Workload {
        alloc_chars: 1000,
        delay: Duration::from_millis(5),
        release_early: false,
    }
}

pub fn with_delay(ms: u64) -> Workload {
    Workload {
        delay: Duration::from_millis(ms),
        ..tiny()
    }
}

pub fn code(s: &str) -> ItemCode {
    ItemCode::parse(s).unwrap()
}

pub fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

pub const IDEMPOTENT: StoreOptions = StoreOptions {
    durable: false,
    idempotency: true,
    max_concurrent_fills: None,
};

pub fn orders_path(dir: &Path) -> PathBuf {
    dir.join("PurchaseOrders.txt")
}

pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join("PurchaseOrders.txt.idempotency")
}

pub fn open(dir: &Path, workload: Workload, options: StoreOptions) -> PurchaseOrderStore {
    PurchaseOrderStore::open_with(orders_path(dir), workload, options).unwrap()
}

pub fn keyed(key: &IdempotencyKey) -> SubmitOptions<'_> {
    SubmitOptions {
        deadline: None,
        key: Some(key),
    }
}

/// The item codes in the orders file, in file order; panics on a malformed line.
pub fn orders(dir: &Path) -> Vec<String> {
    let file = read_orders_file(orders_path(dir)).unwrap();
    assert!(file.malformed.is_empty(), "{:?}", file.malformed);
    file.orders.into_iter().map(ItemCode::into_string).collect()
}

pub fn journal_text(dir: &Path) -> String {
    std::fs::read_to_string(journal_path(dir)).unwrap()
}

pub fn unix_ms(ago: Duration) -> u64 {
    (SystemTime::now() - ago)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
