//! The real HAProxy in front of real `purchasing-api` processes: the generated
//! configuration is accepted by `haproxy -c`, requests reach both nodes with their request
//! id intact, a killed node is taken out and its traffic goes to the other. Tiny workloads,
//! only 127.0.0.1, every wait bounded. Without HAProxy these tests print one SKIPPED line
//! (and fail under CI).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use loadtest::balancer::{
    Balancer, BalancerConfig, Node, StatsSampler, check_config, node_per_request,
    require_installed_or_skip,
};
use loadtest::confine::Limits;
use loadtest::server::{ServerHandle, ServerSpec, SutKind};

use common::sibling_binary;

/// A node: the real API with a tiny workload, writing the shared orders file.
async fn start_node(dir: &Path, index: usize) -> ServerHandle {
    let spec = ServerSpec {
        kind: SutKind::Api,
        binary: sibling_binary("purchasing-api"),
        orders_file: dir.join("PurchaseOrders.txt"),
        lab_args: Vec::new(),
        args: ["--alloc-chars", "1000", "--delay-ms", "5"]
            .iter()
            .map(|a| a.to_string())
            .collect(),
        limits: Limits::default(),
        restart_on_crash: false,
        sample_every: Duration::from_millis(100),
        log_file: Some(dir.join(format!("node{index}.log"))),
        core_slot: index,
        link: None,
    };
    ServerHandle::start(spec).await.expect("start a node")
}

/// Two nodes writing `dir`'s orders file, and HAProxy in front of them with its
/// configuration and log in `balancer_dir`.
async fn two_nodes_behind_haproxy(
    dir: &Path,
    balancer_dir: &Path,
) -> (ServerHandle, ServerHandle, Balancer) {
    let node0 = start_node(dir, 0).await;
    let node1 = start_node(dir, 1).await;
    let nodes = vec![
        Node::numbered(0, node0.addr()),
        Node::numbered(1, node1.addr()),
    ];
    let out = balancer_dir.to_path_buf();
    let balancer = tokio::task::spawn_blocking(move || Balancer::start(nodes, &out, None, |_| {}))
        .await
        .unwrap()
        .expect("start haproxy");
    (node0, node1, balancer)
}

/// One POST over a fresh connection: (status, the response's X-Request-Id).
fn post(addr: SocketAddr, code: &str, request_id: &str, key: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = format!("={code}");
    let key = key
        .map(|k| format!("Idempotency-Key: {k}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "POST /api/StockReplenishmentRequests HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Request-Id: {request_id}\r\n{key}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let echoed = response
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    (status, echoed)
}

fn balancer_addr(balancer: &Balancer) -> SocketAddr {
    balancer.config().listen
}

fn order_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("PurchaseOrders.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_generated_configuration_is_accepted_by_haproxy() {
    if require_installed_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nodes = vec![
        Node::numbered(0, "127.0.0.1:18080".parse().unwrap()),
        Node::numbered(1, "127.0.0.1:18081".parse().unwrap()),
    ];
    let with_agents: Vec<Node> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Node {
            agent: Some(format!("127.0.0.1:1909{i}").parse().unwrap()),
            ..n.clone()
        })
        .collect();
    for (maxconn, nodes) in [(None, &nodes), (Some(5), &with_agents)] {
        let mut config = BalancerConfig::new(
            nodes.clone(),
            "127.0.0.1:18082".parse().unwrap(),
            dir.path().join("stats.sock"),
        );
        config.maxconn_per_node = maxconn;
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config.render()).unwrap();
        check_config(&path).unwrap_or_else(|e| panic!("{e}\n{}", config.render()));
    }
    // And a broken one is refused with HAProxy's own words.
    let path = dir.path().join("broken.cfg");
    std::fs::write(&path, "frontend x\n    bind 127.0.0.1:notaport\n").unwrap();
    let error = check_config(&path).unwrap_err().to_string();
    assert!(
        error.contains("refused the generated configuration"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_both_nodes_with_their_request_id() {
    if require_installed_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (node0, node1, balancer) = two_nodes_behind_haproxy(dir.path(), dir.path()).await;
    let addr = balancer_addr(&balancer);
    // Concurrent pairs, so that leastconn has a reason to use both nodes.
    let codes: Vec<String> = (0..20).map(|i| format!("BAL-{i:02}")).collect();
    let results = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let handles: Vec<_> = codes
                .chunks(2)
                .flat_map(|pair| pair.to_vec())
                .map(|code| {
                    scope.spawn(move || {
                        let rid = format!("rid-{code}");
                        let (status, echoed) = post(addr, &code, &rid, None);
                        (status, rid, echoed)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    })
    .await
    .unwrap();
    for (status, rid, echoed) in &results {
        assert_eq!(*status, 201, "{rid}");
        assert_eq!(echoed, rid, "the request id survives the hop");
    }
    let stats = balancer.stats().expect("show stat");
    let log = balancer.log_path().to_path_buf();
    balancer.stop();
    let per_request = node_per_request(&log).expect("read haproxy.log");
    assert_eq!(
        per_request.len(),
        20,
        "one log line per request; haproxy.log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let on = |node: &str| {
        per_request
            .values()
            .filter(|l| l[0].node.as_deref() == Some(node))
            .count()
    };
    assert!(
        on("api0") > 0 && on("api1") > 0,
        "both nodes served: {} and {} ({stats:?})",
        on("api0"),
        on("api1")
    );
    assert_eq!(on("api0") + on("api1"), 20);
    let epoch = std::time::Instant::now();
    node0.stop(Duration::from_secs(5), epoch).await;
    node1.stop(Duration::from_secs(5), epoch).await;
    assert_eq!(order_lines(dir.path()).len(), 20, "one line per order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_taken_out_and_its_traffic_goes_to_the_other() {
    if require_installed_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (node0, node1, balancer) = two_nodes_behind_haproxy(dir.path(), dir.path()).await;
    let addr = balancer_addr(&balancer);
    let epoch = Instant::now();
    let sampler = StatsSampler::start(
        balancer.stats_reader(),
        vec!["api0".into(), "api1".into()],
        balancer.pid(),
        epoch,
        1,
    );
    // Both up first (the first checks pass within one interval).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !balancer
        .stats()
        .map(|rows| {
            rows.iter()
                .filter(|r| r.name != "BACKEND" && r.is_up())
                .count()
                == 2
        })
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "both nodes never came up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(node0.inject_kill(), "node0 was running");
    let killed_at = epoch.elapsed().as_secs_f64();
    // Orders keep coming, 40 of them 50 ms apart (over 2 s, longer on a busy machine): a
    // connection to the dead node fails and is retried on the other (always safe: it
    // never reached a node), so every one succeeds.
    let statuses = tokio::task::spawn_blocking(move || {
        (0..40)
            .map(|n| {
                std::thread::sleep(Duration::from_millis(50));
                post(addr, &format!("FO-{n:03}"), &format!("fo-{n}"), None).0
            })
            .collect::<Vec<u16>>()
    })
    .await
    .unwrap();
    let seen = sampler.finish();
    assert!(
        statuses.iter().all(|s| *s == 201),
        "every order succeeded through the failover: {statuses:?}"
    );
    let down = seen
        .transitions
        .iter()
        .find(|t| t.node == "api0" && !t.up)
        .expect("node0 was taken out of rotation");
    let detect = down.t_s - killed_at;
    assert!(
        (0.0..=2.5).contains(&detect),
        "taken out {detect:.2} s after the kill"
    );
    assert!(
        !seen.transitions.iter().any(|t| t.node == "api1" && !t.up),
        "node1 stayed in: {:?}",
        seen.transitions
    );
    let log = balancer.log_path().to_path_buf();
    balancer.stop();
    let per_request = node_per_request(&log).unwrap();
    let after_kill_on_node1 = per_request
        .iter()
        .filter(|(rid, _)| rid.starts_with("fo-"))
        .filter(|(_, l)| l[0].node.as_deref() == Some("api1"))
        .count();
    assert_eq!(after_kill_on_node1, statuses.len(), "all went to node1");
    let observed = node1.stop(Duration::from_secs(5), epoch).await;
    assert!(observed.stopped_cleanly);
    drop(node0);
    let lines = order_lines(dir.path());
    assert_eq!(lines.len(), statuses.len(), "each order written once");
}

/// The whole lab, scaled out: two real nodes behind the real HAProxy, node0 SIGKILLed
/// mid-run and restarted; with client retries and idempotency keys nothing acknowledged
/// is lost or written twice, and the report says when HAProxy took node0 out and back.
#[test]
fn a_scaled_out_lab_run_fails_over_and_accounts_for_every_order() {
    if require_installed_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "run",
            "--spawn-server",
            "--instances",
            "2",
            "--profile",
            "rate",
            "--rate",
            "20",
            "--duration",
            "6",
            "--kill-instance-at",
            "1.5",
            "--instance-down-for",
            "2",
            "--retries",
            "2",
            "--out",
        ])
        .arg(&out)
        .args([
            "--",
            "--alloc-chars",
            "1000",
            "--delay-ms",
            "5",
            "--protect",
        ])
        .output()
        .expect("run loadtest");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let rec = &report["reconciliation"];
    assert_eq!(rec["lost"], 0, "{rec}");
    assert_eq!(rec["duplicates"], 0, "{rec}");
    assert_eq!(rec["ghost"], 0, "{rec}");
    assert_eq!(
        report["requests"]["acknowledged"], report["requests"]["total"],
        "every order acknowledged through the failover: {stderr}"
    );
    let balancer = &report["balancer"];
    assert_eq!(balancer["instances"], 2);
    for node in balancer["nodes"].as_array().unwrap() {
        assert!(node["requests"].as_u64().unwrap() > 0, "{node}");
    }
    let crash = &balancer["nodes"][0]["crash_events"][0];
    assert_eq!(crash["injected"], true, "{crash}");
    let detect = crash["detect_down_s"]
        .as_f64()
        .expect("taken out of rotation");
    assert!(detect <= 2.5, "taken out {detect} s after the kill");
    let back = crash["back_up_s"].as_f64().expect("back in rotation");
    assert!(back <= 3.0, "back {back} s after the restart");
    let config = std::fs::read_to_string(out.join("haproxy.cfg")).unwrap();
    check_config(&out.join("haproxy.cfg")).unwrap();
    assert!(config.contains("balance leastconn"));
    assert!(out.join("haproxy.log").is_file());
    // Nothing left behind: no HAProxy still running on this configuration.
    let left = std::process::Command::new("pgrep")
        .args(["-f", &out.join("haproxy.cfg").display().to_string()])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "HAProxy left running");
}

/// A balancer the user runs (`--balancer-url`, `--balancer-stats-socket`): here the test
/// starts HAProxy and two nodes itself, then the lab only loads and watches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_loads_and_watches_a_balancer_the_user_runs() {
    if require_installed_or_skip().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let balancer_dir = dir.path().join("balancer");
    std::fs::create_dir_all(&balancer_dir).unwrap();
    let (node0, node1, balancer) = two_nodes_behind_haproxy(dir.path(), &balancer_dir).await;
    let out = dir.path().join("run");
    let socket = balancer.config().stats_socket.clone();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"));
    command
        .args([
            "run",
            "--balancer-url",
            balancer.url(),
            "--balancer-stats-socket",
        ])
        .arg(&socket)
        .arg("--orders-file")
        .arg(dir.path().join("PurchaseOrders.txt"))
        .args([
            "--settle",
            "1",
            "--profile",
            "rate",
            "--rate",
            "20",
            "--duration",
            "3",
            "--out",
        ])
        .arg(&out);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run loadtest");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["reconciliation"]["lost"], 0);
    let watched = &report["balancer"];
    assert_eq!(watched["spawned"], false, "{watched}");
    assert_eq!(watched["instances"], 2);
    let sent: u64 = watched["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["requests"].as_u64().unwrap())
        .sum();
    let total = report["requests"]["total"].as_u64().unwrap();
    // The first stats read may land just after the first request went out.
    assert!(
        sent + 2 >= total && sent <= total,
        "HAProxy sent {sent} of {total}"
    );
    assert!(!watched["samples"].as_array().unwrap().is_empty());
    // A socket that is not HAProxy's: one clear line, nothing run.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "run",
            "--balancer-url",
            balancer.url(),
            "--balancer-stats-socket",
        ])
        .arg(dir.path().join("no-such.sock"))
        .args([
            "--profile",
            "rate",
            "--rate",
            "1",
            "--duration",
            "1",
            "--out",
        ])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let error = String::from_utf8_lossy(&bad.stderr);
    assert!(error.contains("cannot read HAProxy's stats"), "{error}");
    balancer.stop();
    let epoch = Instant::now();
    node0.stop(Duration::from_secs(5), epoch).await;
    node1.stop(Duration::from_secs(5), epoch).await;
}
