//! The lab network on real namespaces, veth pairs, a bridge and iptables (root): two hosts
//! reach each other by address, not once a partition (or total loss, or isolation) is in
//! place, and again after `heal`; a thin link is a real tbf qdisc; nothing is left once
//! the network is dropped.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use loadtest::network::{Network, NetworkOptions};

mod common;

use common::namespaces_of;

/// Long enough for a SYN and its answer across a bridge; a partition makes it expire.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(700);

/// A listener inside `host`'s namespace on its address, answering every connection with
/// one byte; its address.
fn serve_in(network: &Network, host: &str) -> SocketAddr {
    let link = network.host(host).unwrap().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        link.netns.enter_this_thread().unwrap();
        let listener = TcpListener::bind((link.address, 0)).unwrap();
        tx.send(listener.local_addr().unwrap()).unwrap();
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"!");
        }
    });
    rx.recv().unwrap()
}

/// Connects from inside `host`'s namespace to `to` and reads the byte; the error's kind
/// when that fails.
fn reach_from(network: &Network, host: &str, to: SocketAddr) -> Result<(), std::io::ErrorKind> {
    let netns = network.host(host).unwrap().netns.clone();
    std::thread::spawn(move || {
        netns.enter_this_thread().unwrap();
        let mut stream = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT).map_err(|e| e.kind())?;
        stream.set_read_timeout(Some(CONNECT_TIMEOUT)).unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).map_err(|e| e.kind())
    })
    .join()
    .unwrap()
}

fn own_links() -> String {
    let out = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn hosts(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn hosts_reach_each_other_until_cut_and_again_after_heal() {
    if !loadtest::prerequisite::network() {
        return;
    }
    let links_before = own_links();
    let network = Network::create(&hosts(&["a", "b", "c"]), NetworkOptions::default()).unwrap();
    let names: Vec<String> = network
        .hosts()
        .iter()
        .map(|h| h.netns.name().to_string())
        .collect();
    assert_eq!(
        network.host("a").unwrap().address,
        Ipv4Addr::new(10, 200, 0, 2)
    );
    assert_eq!(
        network.host("c").unwrap().address,
        Ipv4Addr::new(10, 200, 0, 4)
    );
    let b = serve_in(&network, "b");
    assert_eq!(reach_from(&network, "a", b), Ok(()));
    // The lab's own namespace has no route to the lab network.
    assert!(TcpStream::connect_timeout(&b, CONNECT_TIMEOUT).is_err());

    network.partition(&hosts(&["a"]), &hosts(&["b"])).unwrap();
    // Quiet, not refused: a SYN dropped on arrival is never answered.
    assert_eq!(
        reach_from(&network, "a", b),
        Err(std::io::ErrorKind::TimedOut)
    );
    assert_eq!(reach_from(&network, "c", b), Ok(()), "only a and b are cut");
    assert!(network.is_faulty());
    let healed = network.heal().unwrap();
    assert!(healed.contains("partitions"), "{healed}");
    assert_eq!(reach_from(&network, "a", b), Ok(()));

    network.isolate("b").unwrap();
    assert_eq!(
        reach_from(&network, "c", b),
        Err(std::io::ErrorKind::TimedOut)
    );
    network.heal().unwrap();

    // Every packet of a's link dropped: the same silence; loss 0 lifts it.
    network.loss("a", 1.0).unwrap();
    assert_eq!(
        reach_from(&network, "a", b),
        Err(std::io::ErrorKind::TimedOut)
    );
    assert_eq!(reach_from(&network, "c", b), Ok(()));
    network.loss("a", 0.0).unwrap();
    assert_eq!(reach_from(&network, "a", b), Ok(()));
    assert!(!network.is_faulty());

    network.rate("a", "1mbit".parse().unwrap()).unwrap();
    let qdisc = |ns: &str| {
        let out = std::process::Command::new("tc")
            .args(["-n", ns, "qdisc", "show", "dev", "eth0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(qdisc(&names[0]).contains("tbf"), "{}", qdisc(&names[0]));
    assert!(
        qdisc(&names[0]).contains("rate 1Mbit"),
        "{}",
        qdisc(&names[0])
    );
    assert_eq!(reach_from(&network, "a", b), Ok(()));
    network.heal().unwrap();
    assert!(!qdisc(&names[0]).contains("tbf"), "{}", qdisc(&names[0]));

    drop(network);
    let left: Vec<String> = namespaces_of(std::process::id())
        .into_iter()
        .filter(|n| names.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert_eq!(
        own_links(),
        links_before,
        "the lab changed the machine's own interfaces"
    );
}

#[test]
fn a_range_too_small_for_the_hosts_is_refused_before_anything_is_made() {
    let options = NetworkOptions {
        cidr: "10.201.0.0/29".parse().unwrap(),
        ..NetworkOptions::default()
    };
    // This process's namespaces for these hosts (the other test here makes a, b and c at the
    // same time, so the whole list may change meanwhile).
    let api_namespaces = || -> Vec<String> {
        (namespaces_of(std::process::id()).into_iter())
            .filter(|n| n.contains("-api"))
            .collect()
    };
    let names: Vec<String> = (0..6).map(|i| format!("api{i}")).collect();
    let err = Network::create(&names, options).err().unwrap().to_string();
    assert!(err.contains("holds 5 hosts and this run has 6"), "{err}");
    assert_eq!(api_namespaces(), Vec::<String>::new());
}
