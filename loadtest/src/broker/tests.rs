use super::{data_dir::*, handle::shell_word, output::*, ports::*};
use std::fs;

#[test]
fn picked_ports_differ() {
    let ports = Ports::pick().unwrap();
    assert_ne!(ports.amqp, ports.dist);
    assert_ne!(ports.amqp, ports.epmd);
    assert_ne!(ports.dist, ports.epmd);
}

#[test]
fn port_clashes_are_recognised() {
    assert!(mentions_port_taken(
        "{listen_error,{acceptor,{127,0,0,1},5672},eaddrinuse}"
    ));
    assert!(mentions_port_taken(
        "epmd: failed to bind socket: Address already in use"
    ));
    assert!(!mentions_port_taken("init terminating in do_boot"));
}

#[test]
fn tails_are_one_line() {
    let note = tail_note("a\n\nb\nc\n", "its output ends");
    assert_eq!(note, "; its output ends: a | b | c");
    assert_eq!(tail_note("\n \n", "x"), "");
}

#[test]
fn the_process_group_is_read_after_the_command_name() {
    let me = std::process::id();
    let group = nix::unistd::getpgrp().as_raw() as u32;
    assert_eq!(process_group_of(me), Some(group));
}

#[test]
fn a_kept_directory_keeps_its_node_name() {
    let dir = tempfile::tempdir().unwrap();
    let first = DataDir::prepare(Some(dir.path())).unwrap();
    let name = first.node_name().unwrap();
    assert!(
        name.starts_with("loadtest-") && name.ends_with("@localhost"),
        "{name}"
    );
    let second = DataDir::prepare(Some(dir.path())).unwrap();
    assert_eq!(second.node_name().unwrap(), name);
    assert!(dir.path().join("mnesia").is_dir());
    second.remove().unwrap();
    assert!(dir.path().is_dir(), "a kept directory stays");
}

#[test]
fn a_temporary_directory_is_removed() {
    let dir = DataDir::prepare(None).unwrap();
    let path = dir.path().to_path_buf();
    dir.write_config(std::net::Ipv4Addr::LOCALHOST, 5672, false)
        .unwrap();
    let config = fs::read_to_string(path.join("rabbitmq.conf")).unwrap();
    assert!(
        config.contains("listeners.tcp.1 = 127.0.0.1:5672"),
        "{config}"
    );
    dir.remove().unwrap();
    assert!(!path.exists());
}

#[test]
fn shell_words_reach_the_program_as_they_were() {
    for word in [
        "/tmp/loadtest-broker-a1",
        "/tmp/my data",
        "it's",
        "a\"b$c`d",
        "",
    ] {
        let echoed = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_word(word)))
            .output()
            .expect("run sh");
        assert_eq!(
            String::from_utf8_lossy(&echoed.stdout),
            word,
            "{}",
            shell_word(word)
        );
    }
    assert_eq!(shell_word("loadtest-1@localhost"), "loadtest-1@localhost");
}

#[test]
fn a_queue_leader_is_read_from_the_cli_output() {
    use super::ctl::{classic_queue_node, leader_in, node_of_pid};
    let members = serde_json::json!([
        {"Node Name": "broker0-x@localhost", "Raft State": "follower"},
        {"Node Name": "broker2-x@localhost", "Raft State": "leader"},
    ]);
    assert_eq!(leader_in(&members).as_deref(), Some("broker2-x@localhost"));
    assert_eq!(leader_in(&serde_json::json!([])), None);
    assert_eq!(
        node_of_pid("<broker1-ab.c@localhost.1658.1234.0>").as_deref(),
        Some("broker1-ab.c@localhost")
    );
    assert_eq!(node_of_pid("broker1@localhost"), None);
    // What `rabbitmqctl list_queues --quiet --no-table-headers name type pid` printed (the
    // JSON formatter's `#PID<10987.740.0>` names no node).
    let listed = "q.dead-letter\tquorum\t<broker0-x@localhost.1.2.0>\n\
                  q\tclassic\t<broker2-x@localhost.1796568583.740.0>\n";
    assert_eq!(
        classic_queue_node(listed, "q").as_deref(),
        Some("broker2-x@localhost")
    );
    assert_eq!(classic_queue_node(listed, "q.dead-letter"), None);
    assert_eq!(classic_queue_node("#PID<10987.740.0>", "q"), None);
}

#[test]
fn the_unacknowledged_count_is_read_from_the_cli_output() {
    use super::ctl::unacknowledged_in;
    let listed = "q.dead-letter\t0\nq\t339\n";
    assert_eq!(unacknowledged_in(listed, "q"), Some(339));
    assert_eq!(unacknowledged_in(listed, "q.dead-letter"), Some(0));
    assert_eq!(unacknowledged_in(listed, "other"), None);
    assert_eq!(unacknowledged_in("q\tmany\n", "q"), None);
}
