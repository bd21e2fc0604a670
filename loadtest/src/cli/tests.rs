use std::path::PathBuf;
use std::time::Duration;

use super::*;
use super::{args::*, compare::*};
use crate::lab::LabOptions;
use crate::messaging::BrokerSource;
use crate::profile::StepProfile;
use crate::runner::Load;

fn parse(args: &[&str]) -> Result<LabOptions, String> {
    let mut argv = vec!["loadtest", "run"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    match cli.command {
        Command::Run(run) => run.into_options(),
        _ => unreachable!("parsed a run"),
    }
}

#[test]
fn blog_is_the_original_test() {
    let o = parse(&["--url", "http://127.0.0.1:8080"]).unwrap();
    assert_eq!(o.profile_name, "blog");
    assert_eq!(
        o.plan.load,
        Load::Closed {
            profile: StepProfile::BLOG,
            think: Duration::ZERO
        }
    );
    assert_eq!(o.plan.iterations, Some(1000));
    assert_eq!(o.plan.client.timeout, Duration::from_secs(30));
    assert!(o.plan.client.new_connection_per_request);
}

#[test]
fn on_the_blog_profile_only_the_reliable_publisher_reuses_its_connection() {
    let amqp = |delivery: &str| {
        parse(&[
            "--transport",
            "amqp",
            "--amqp-url",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "--delivery",
            delivery,
        ])
        .unwrap()
    };
    assert!(amqp("faithful").plan.client.new_connection_per_request);
    assert!(!amqp("reliable").plan.client.new_connection_per_request);
    let chosen = parse(&[
        "--transport",
        "amqp",
        "--amqp-url",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        "--delivery",
        "reliable",
        "--connection",
        "new",
    ])
    .unwrap();
    assert!(
        chosen.plan.client.new_connection_per_request,
        "--connection wins"
    );
}

#[test]
fn blog_refuses_shape_flags() {
    let err = parse(&["--url", "http://x:1", "--users", "5"]).unwrap_err();
    assert!(err.contains("--profile step"), "{err}");
}

#[test]
fn step_and_rate_profiles() {
    let o = parse(&[
        "--profile",
        "step",
        "--users",
        "5",
        "--step-users",
        "5",
        "--step-seconds",
        "2",
        "--max-users",
        "20",
        "--duration",
        "10",
        "--url",
        "http://127.0.0.1:1",
    ])
    .unwrap();
    let Load::Closed { profile, .. } = o.plan.load else {
        panic!()
    };
    assert_eq!(profile.max_users, 20);
    assert!(!o.plan.client.new_connection_per_request);

    let o = parse(&[
        "--profile",
        "rate",
        "--rate",
        "5",
        "--duration",
        "30",
        "--spike-rate",
        "50",
        "--spike-start",
        "10",
        "--spike-seconds",
        "5",
        "--url",
        "http://127.0.0.1:1",
    ])
    .unwrap();
    let Load::Open(p) = o.plan.load else { panic!() };
    assert_eq!(p.spike.unwrap().rate, 50.0);
    assert_eq!(o.plan.duration, Some(Duration::from_secs(30)));
}

#[test]
fn bad_combinations_are_explained() {
    for (args, needle) in [
        (
            &["--profile", "step", "--url", "http://x:1"][..],
            "--iterations or --duration",
        ),
        (
            &[
                "--profile",
                "rate",
                "--duration",
                "5",
                "--url",
                "http://x:1",
            ],
            "--rate <RATE>",
        ),
        (
            &[
                "--profile",
                "rate",
                "--rate",
                "5",
                "--duration",
                "5",
                "--spike-rate",
                "9",
                "--url",
                "http://x:1",
            ],
            "--spike-start <SPIKE_START>",
        ),
        (&["--profile", "step", "--duration", "5"], "--url URL"),
        (
            &["--profile", "step", "--duration=-1", "--url", "http://x:1"],
            "--duration",
        ),
        (
            &["--url", "http://x:1", "--", "--alloc-chars", "1"],
            "'--url <URL>' cannot be used with '[SERVER_ARGS]...'",
        ),
        // A limit for a server the lab does not start would be ignored: clap refuses it.
        (
            &["--url", "http://x:1", "--cpus", "1"],
            "'--url <URL>' cannot be used with '--cpus <CPUS>'",
        ),
        (
            &["--cpus", "1"],
            "the following required arguments were not provided",
        ),
        (
            &[
                "--spawn-server",
                "--server-bin",
                "/bin/true",
                "--",
                "--bind",
                "0.0.0.0:1",
            ],
            "set by the lab",
        ),
    ] {
        let err = parse(args).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn messaging_flags_are_checked() {
    for (args, needle) in [
        (
            &["--transport", "amqp", "--spawn-server"][..],
            "--spawn-broker",
        ),
        (
            &["--url", "http://x:1", "--spawn-broker"][..],
            "--transport amqp",
        ),
        (
            &["--transport", "amqp", "--spawn-broker", "--retries", "2"][..],
            "--delivery reliable",
        ),
        (
            &[
                "--transport",
                "amqp",
                "--spawn-broker",
                "--kill-worker-every",
                "1",
            ][..],
            "--spawn-server",
        ),
        (
            &[
                "--transport",
                "amqp",
                "--amqp-url",
                "amqp://guest:guest@127.0.0.1:1/%2f",
                "--restart-broker-at",
                "1",
            ][..],
            "'--amqp-url <URL>' cannot be used with '--restart-broker-at <SECONDS>'",
        ),
        (
            &["--transport", "amqp", "--restart-broker-at", "1"][..],
            "--spawn-broker",
        ),
        (
            &[
                "--transport",
                "amqp",
                "--spawn-broker",
                "--spawn-server",
                "--server-bin",
                "/bin/true",
                "--",
                "--delivery",
                "reliable",
            ][..],
            "set by the lab",
        ),
    ] {
        let err = parse(args).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let o = parse(&[
        "--transport",
        "amqp",
        "--spawn-broker",
        "--delivery",
        "reliable",
        "--drain-timeout",
        "30",
        "--orders-file",
        "/tmp/o.txt",
    ])
    .unwrap();
    let m = o.messaging.unwrap();
    assert_eq!(m.delivery, inventory::DeliveryMode::Reliable);
    assert_eq!(m.drain_timeout, Duration::from_secs(30));
    assert_eq!(m.broker, BrokerSource::Spawn { nodes: 1 });
}

#[test]
fn the_four_configurations_come_from_one_set_of_arguments() {
    let cli = Cli::try_parse_from([
        "loadtest",
        "compare",
        "--transports",
        "--profile",
        "rate",
        "--rate",
        "5",
        "--duration",
        "2",
        "--spawn-server",
        "--server-bin",
        "/bin/true",
        "--drain-timeout",
        "9",
        "--",
        "--delay-ms",
        "5",
    ])
    .unwrap();
    let Command::Compare(args) = cli.command else {
        unreachable!()
    };
    assert!(args.transports);
    let mut seen = Vec::new();
    for config in SweepConfig::STYLES {
        let run = configuration(&args.run, config, PathBuf::from("x")).unwrap();
        let o = run.into_options().unwrap();
        seen.push((
            config.style_name(),
            o.messaging.as_ref().map(|m| m.delivery.as_str()),
            o.plan.client.retries,
        ));
        if let Some(m) = &o.messaging {
            assert_eq!(m.broker, BrokerSource::Spawn { nodes: 1 });
            assert_eq!(m.drain_timeout, Duration::from_secs(9));
        }
    }
    assert_eq!(
        seen,
        vec![
            ("rpc", None, 0),
            ("rpc-protected", None, DEFAULT_PROTECTED_RETRIES),
            ("messaging-faithful", Some("faithful"), 0),
            ("messaging-reliable", Some("reliable"), 0),
        ]
    );
}

#[test]
fn thresholds_with_unknown_metrics_are_usage_errors() {
    let err = parse(&["--url", "http://x:1", "--fail-on", "lots>0"]).unwrap_err();
    assert!(err.contains("unknown metric"), "{err}");
    let o = parse(&[
        "--url",
        "http://x:1",
        "--fail-on",
        "lost>0",
        "--fail-on",
        "p99>2000",
    ])
    .unwrap();
    assert_eq!(o.thresholds.len(), 2);
}

/// The rules clap states (and `--help` shows): each refused with clap's own message.
#[test]
fn clap_refuses_the_combinations_it_can_express() {
    let url = "http://x:1";
    let amqp = "amqp://guest:guest@127.0.0.1:1/%2f";
    for (args, needle) in [
        // One target: yours (--url or --balancer-url) or a spawned one.
        (
            &["--url", url, "--balancer-url", url][..],
            "'--url <URL>' cannot be used with '--balancer-url <URL>'",
        ),
        (
            &["--balancer-url", url, "--spawn-server"][..],
            "'--balancer-url <URL>' cannot be used with '--spawn-server'",
        ),
        // What shapes a spawned server is refused beside a balancer you run, too.
        (
            &["--balancer-url", url, "--instances", "2"][..],
            "'--balancer-url <URL>' cannot be used with '--instances <K>'",
        ),
        (
            &["--balancer-url", url, "--cpus", "1"][..],
            "'--balancer-url <URL>' cannot be used with '--cpus <CPUS>'",
        ),
        // A flag that needs --instances is refused beside --url, not excused.
        (
            &["--url", url, "--kill-instance-at", "1"][..],
            "'--url <URL>' cannot be used with '--kill-instance-at <SECONDS>'",
        ),
        (
            &["--spawn-server", "--balancer-stats-socket", "/s"][..],
            "'--spawn-server' cannot be used with '--balancer-stats-socket <PATH>'",
        ),
        // One broker, and --transport amqp needs it.
        (
            &["--transport", "amqp", "--spawn-server"][..],
            "<--spawn-broker|--amqp-url <URL>>",
        ),
        (
            &["--transport", "amqp", "--spawn-broker", "--amqp-url", amqp][..],
            "'--spawn-broker' cannot be used with '--amqp-url <URL>'",
        ),
    ] {
        let err = parse(args).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn times_and_broker_urls_are_parsed_by_clap() {
    let o = parse(&[
        "--profile",
        "step",
        "--duration",
        "10s",
        "--step-seconds",
        "500ms",
        "--timeout",
        "2",
        "--url",
        "http://x:1",
    ])
    .unwrap();
    assert_eq!(o.plan.duration, Some(Duration::from_secs(10)));
    assert_eq!(o.plan.client.timeout, Duration::from_secs(2));
    let Load::Closed { profile, .. } = o.plan.load else {
        panic!()
    };
    assert_eq!(profile.step_duration, Duration::from_millis(500));
    for (args, needle) in [
        (
            &[
                "--profile",
                "step",
                "--duration",
                "0",
                "--url",
                "http://x:1",
            ][..],
            "invalid value '0' for '--duration <DURATION>': must be a time greater than 0 s",
        ),
        (
            &["--url", "http://x:1", "--settle", "soon"][..],
            "'soon' is not a time",
        ),
        (
            &[
                "--transport",
                "amqp",
                "--spawn-broker",
                "--spawn-server",
                "--kill-worker-every",
                "0.01",
            ][..],
            "--kill-worker-every <SECONDS>': must be at least",
        ),
        (
            &[
                "--transport",
                "amqp",
                "--amqp-url",
                "amqps://u:secret@h/%2f",
            ][..],
            "uses amqps",
        ),
    ] {
        let err = parse(args).unwrap_err();
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("secret"), "the password is hidden: {err}");
    }
}

#[test]
fn a_broker_url_reaches_the_lab_whole() {
    for url in [
        "amqp://guest:s%40cret@127.0.0.1:5999/%2f",
        "amqp://guest:guest@[fd00::7]:5999/orders?heartbeat=5",
    ] {
        let o = parse(&["--transport", "amqp", "--amqp-url", url]).unwrap();
        let BrokerSource::Url(passed) = o.messaging.unwrap().broker else {
            panic!("a URL")
        };
        let given = inventory::AmqpUrl::parse(url).unwrap();
        assert_eq!(passed.first().uri(), given.uri(), "{url} → {passed}");
        // What the spawned worker's --amqp-url gets: the URL as given, password and all.
        assert_eq!(passed.secret(), url);
    }
}

#[test]
fn several_broker_urls_reach_the_lab_in_order_listed_or_repeated() {
    let (a, b, c) = ("amqp://h:5671", "amqp://h:5672", "amqp://h:5673");
    let list = format!("{a},{b}");
    for args in [
        vec!["--transport", "amqp", "--amqp-url", &list, "--amqp-url", c],
        vec![
            "--transport",
            "amqp",
            "--amqp-url",
            a,
            "--amqp-url",
            &format!("{b} ,{c}"),
        ],
    ] {
        let o = parse(&args).unwrap();
        let BrokerSource::Url(urls) = o.messaging.unwrap().broker else {
            panic!("URLs")
        };
        let ports: Vec<u16> = urls.iter().map(|u| u.port()).collect();
        assert_eq!(ports, [5671, 5672, 5673], "{args:?}");
    }
}

#[test]
fn compare_scale_out_needs_a_spawned_server() {
    for (args, needle) in [
        (
            &["--scale-out", "1,2", "--url", "http://x:1"][..],
            "cannot be used with",
        ),
        (
            &["--scale-out", "1,2"][..],
            "the following required arguments were not provided",
        ),
    ] {
        let mut argv = vec!["loadtest", "compare"];
        argv.extend_from_slice(args);
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// The defaults `--help` states are the ones the code uses.
#[test]
fn the_help_states_the_defaults_in_force() {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let run = command.find_subcommand_mut("run").unwrap();
    let help = run.render_long_help().to_string();
    let b = StepProfile::BLOG;
    for default in [
        format!("[default: {}]", DEFAULT_DRAIN_TIMEOUT_S),
        format!("[default: {}:", crate::cluster::DEFAULT_DOWN_FOR.as_secs()),
        format!("[default: {},", inventory::DEFAULT_TIMEOUT.as_secs()),
        format!("[default: {} for --profile blog", BLOG_ITERATIONS),
        format!(
            "[default:\n          {} for --profile blog",
            BLOG_DURATION.as_secs()
        ),
        format!("steps [default: {}]", b.step_duration.as_secs()),
        format!("Most virtual users [default: {}]", b.max_users),
    ] {
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let wanted = default.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&wanted), "--help says {wanted:?}");
    }
}

#[test]
fn workers_k_are_hosts_of_their_own_and_belong_to_the_messaging_half() {
    let o = parse(&[
        "--transport",
        "amqp",
        "--spawn-broker",
        "--broker-nodes",
        "3",
        "--spawn-server",
        "--server-bin",
        "/bin/true",
        "--workers",
        "2",
        "--fault",
        "2s:kill:worker1",
    ])
    .unwrap();
    assert_eq!(o.messaging.as_ref().unwrap().workers, 2);
    assert_eq!(o.spawned_servers(), 2);
    let names = o.topology().names();
    for host in ["worker0", "worker1", "broker0", "broker2", "client"] {
        assert!(names.contains(host), "{host} in {names}");
    }
    let broker = o.topology().host("broker1").cloned().unwrap();
    assert_eq!(broker.memory_bytes, Some(crate::broker::NODE_MEMORY_BYTES));

    let err = parse(&[
        "--spawn-server",
        "--server-bin",
        "/bin/true",
        "--workers",
        "2",
    ])
    .unwrap_err();
    assert!(
        err.contains("--workers belongs to the messaging half"),
        "{err}"
    );
    let err = parse(&[
        "--transport",
        "amqp",
        "--spawn-broker",
        "--spawn-server",
        "--server-bin",
        "/bin/true",
        "--fault",
        "2s:kill:worker1",
    ])
    .unwrap_err();
    assert!(err.contains("worker1"), "{err}");
}

#[test]
fn at_scale_compares_k_api_nodes_with_k_workers_on_a_cluster() {
    let cli = Cli::try_parse_from([
        "loadtest",
        "compare",
        "--at-scale",
        "2",
        "--spawn-server",
        "--server-bin",
        "/bin/true",
        "--profile",
        "rate",
        "--rate",
        "5",
        "--duration",
        "2",
    ])
    .unwrap();
    let Command::Compare(args) = cli.command else {
        unreachable!()
    };
    let runs = at_scale_runs(&args.run, 2, &PathBuf::from("x")).unwrap();
    let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "rpc-protected ×2 (HAProxy)",
            "messaging-reliable ×2 (3 brokers)"
        ]
    );
    let rpc = runs[0].1.clone().into_options().unwrap();
    assert_eq!(rpc.scale_out.map(|s| s.instances), Some(2));
    assert!(rpc.messaging.is_none());
    let messaging = runs[1].1.clone().into_options().unwrap();
    let m = messaging.messaging.unwrap();
    assert_eq!(
        (m.workers, m.broker.clone()),
        (2, BrokerSource::Spawn { nodes: 3 })
    );
    assert_eq!(m.delivery, inventory::DeliveryMode::Reliable);

    let mut with_instances = args.run.clone();
    with_instances.instances = Some(2);
    let err = at_scale_runs(&with_instances, 2, &PathBuf::from("x")).unwrap_err();
    assert!(err.contains("drop them"), "{err}");
    assert!(
        Cli::try_parse_from([
            "loadtest",
            "compare",
            "--at-scale",
            "2",
            "--transports",
            "--spawn-server"
        ])
        .is_err()
    );
}
