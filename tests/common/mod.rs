//! Shared helpers for the end-to-end tests: real binaries, real sockets, real files.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The flags every test uses unless it measures the real workload: 1,000 characters
/// and 5 ms per order, so hundreds of orders cost nothing.
pub const TINY_WORKLOAD: [&str; 4] = ["--alloc-chars", "1000", "--delay-ms", "5"];

/// Path of a binary of this workspace, built by `cargo test` next to the test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} was not built; run the tests with `cargo test --workspace` from the repository root",
        path.display()
    );
    path
}

/// A `purchasing-api` process on an ephemeral loopback port, killed when dropped.
pub struct ApiServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub orders_file: PathBuf,
    stderr_log: PathBuf,
    /// Keeps the temporary directory (orders file, logs) alive as long as the server.
    _dir: Option<tempfile::TempDir>,
}

impl ApiServer {
    /// Starts the API with a tiny workload and a fresh orders file.
    pub fn spawn_tiny() -> Self {
        Self::spawn(&TINY_WORKLOAD)
    }

    /// Starts the API with `args` (plus `--bind 127.0.0.1:0` and a fresh orders file).
    pub fn spawn(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let orders_file = dir.path().join("PurchaseOrders.txt");
        let mut server = Self::spawn_with_file(&orders_file, args);
        server._dir = Some(dir);
        server
    }

    /// Starts the API writing to `orders_file` (which the caller keeps alive).
    pub fn spawn_with_file(orders_file: &Path, args: &[&str]) -> Self {
        Self::spawn_wrapped(&[], orders_file, args)
    }

    /// Like [`ApiServer::spawn_with_file`], run through `wrapper` (a command that runs
    /// the rest of its arguments, such as `prlimit --nofile=200 --`).
    pub fn spawn_wrapped(wrapper: &[&str], orders_file: &Path, args: &[&str]) -> Self {
        let stderr_log = orders_file.with_extension(format!("stderr.{}.log", unique_suffix()));
        let stderr = std::fs::File::create(&stderr_log).expect("stderr log file");
        let api = bin_path("purchasing-api");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(api);
                command
            }
            None => Command::new(api),
        };
        let mut child = command
            .args(["--bind", "127.0.0.1:0", "--orders-file"])
            .arg(orders_file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start purchasing-api");
        let addr = read_listening_addr(&mut child, &stderr_log);
        ApiServer {
            child,
            addr,
            orders_file: orders_file.to_path_buf(),
            stderr_log,
            _dir: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn orders_url(&self) -> String {
        format!("{}/api/StockReplenishmentRequests", self.url())
    }

    /// The file's contents, parsed by the persistence crate's one parser.
    pub fn orders(&self) -> purchasing_persistence::OrdersFile {
        purchasing_persistence::read_orders_file(&self.orders_file).expect("read orders file")
    }

    pub fn orders_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.orders_file).expect("read orders file")
    }

    /// What the server logged so far (for assertion messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we own; no memory is shared.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size now (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:") * 1024
    }

    /// Peak resident set size so far (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:") * 1024
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_listening_addr(child: &mut Child, stderr_log: &Path) -> SocketAddr {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Some(Ok(line))) => line,
        other => {
            let _ = child.kill();
            let mut log = String::new();
            let _ = std::fs::File::open(stderr_log).and_then(|mut f| f.read_to_string(&mut log));
            panic!("purchasing-api did not print its address ({other:?}); stderr:\n{log}");
        }
    };
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    addr.parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
}

/// A value from /proc/PID/status given in kB (e.g. "VmHWM:", "VmRSS:").
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"))
}

/// A fresh item code, as the original integration test used a new GUID per run.
pub fn fresh_code() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}
