//! A real three-node RabbitMQ cluster, started once for this file (a cluster takes
//! seconds to form): the nodes join and report three running; a confirmed message on a
//! quorum queue survives the SIGKILL of the queue's leader and is consumed once from
//! another node; the killed node rejoins on restart; the stop leaves nothing behind.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use loadtest::broker::{Broker, BrokerOptions, Ctl, require_installed_or_skip, start_cluster};
use wire_contract::amqp::{Delivery, QUEUE};

const MESSAGES: usize = 200;
/// AMQP delivery mode of a message the broker writes to disk.
const PERSISTENT: u8 = 2;

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), future)
                .await
                .expect("the AMQP exchange finished in time")
        })
}

async fn open(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let channel = connection.create_channel().await.expect("a channel");
    (connection, channel)
}

/// Declares the reliable queues (quorum) on `url` and publishes `MESSAGES` persistent
/// messages, each confirmed, with ids `m0`, `m1`, ….
async fn publish_confirmed(url: &str) {
    let (connection, channel) = open(url).await;
    amqp_link::declare_queues(&channel, Delivery::Reliable)
        .await
        .expect("the reliable queues are declared");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("publisher confirms");
    for i in 0..MESSAGES {
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_message_id(format!("m{i}").into());
        let confirm = channel
            .basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions::default(),
                b"SKU",
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("the confirm");
        assert!(
            confirm.is_ack(),
            "message m{i} was not confirmed: {confirm:?}"
        );
    }
    let _ = connection.close(200, "published".into()).await;
}

/// Takes every message from the orders queue on `url` (acknowledging each): id → times.
async fn drain(url: &str) -> BTreeMap<String, usize> {
    let (connection, channel) = open(url).await;
    let mut seen = BTreeMap::new();
    while let Some(message) = channel
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        let id = message.delivery.properties.message_id().clone();
        *seen
            .entry(id.map(|i| i.to_string()).unwrap_or_default())
            .or_default() += 1;
    }
    let _ = connection.close(200, "drained".into()).await;
    seen
}

fn running_nodes(node: &Broker) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    Ctl::of(node)
        .running_nodes(deadline)
        .expect("cluster_status answers")
}

/// Whether a process with this pid still runs as `name` (not a zombie).
fn alive_as(pid: u32, name: &str) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rfind(')')
        .is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'));
    comm.trim() == name && !zombie
}

#[test]
fn a_three_node_cluster_keeps_confirmed_messages_through_the_loss_of_the_leader() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let mut nodes = start_cluster(3, BrokerOptions::default(), &[]).expect("the cluster forms");
    let names: Vec<String> = nodes.iter().map(|n| n.node_name().to_string()).collect();
    let mut running = running_nodes(&nodes[2]);
    running.sort();
    assert_eq!(running, names, "every node runs in one cluster");

    block_on(publish_confirmed(&nodes[1].amqp_url()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = Ctl::of(&nodes[0])
        .queue_leader(QUEUE, deadline)
        .expect("a leader");
    let at = names
        .iter()
        .position(|n| *n == leader)
        .expect("the leader is ours");
    nodes[at].kill().expect("the leader is killed");

    // Another node takes over and still has every confirmed message, each once.
    let other = &nodes[(at + 1) % 3];
    let new_leader = Ctl::of(other).queue_leader(QUEUE, Instant::now() + Duration::from_secs(30));
    assert_ne!(
        new_leader.as_deref().ok(),
        Some(leader.as_str()),
        "{new_leader:?}"
    );
    let seen = block_on(drain(&other.amqp_url()));
    assert_eq!(
        seen.len(),
        MESSAGES,
        "every confirmed message is there: {seen:?}"
    );
    assert!(seen.values().all(|&n| n == 1), "each once: {seen:?}");

    // The killed node rejoins its cluster from its data directory.
    nodes[at].restart().expect("the killed node starts again");
    assert_eq!(running_nodes(&nodes[at]).len(), 3, "it rejoined");

    let footprint: Vec<(u32, PathBuf)> = nodes
        .iter()
        .map(|n| (n.pid().unwrap(), n.data_dir().to_path_buf()))
        .collect();
    let epmd = nodes[0].epmd_pid().expect("the cluster's epmd runs");
    let home = nodes[0]
        .cluster_home()
        .expect("a cluster member")
        .to_path_buf();
    for node in nodes.into_iter().rev() {
        node.stop().expect("a clean stop");
    }
    for (pid, dir) in footprint {
        assert!(!alive_as(pid, "beam.smp"), "beam {pid} still runs");
        assert!(!dir.exists(), "{} is left", dir.display());
    }
    assert!(!alive_as(epmd, "epmd"), "epmd {epmd} still runs");
    assert!(
        !home.exists(),
        "the cookie's directory {} is left",
        home.display()
    );
}
