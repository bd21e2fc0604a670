use std::time::Duration;

use super::*;
use crate::topology::{Host, Role, Topology};

fn topology() -> Topology {
    Topology {
        hosts: vec![
            Host::new("worker0", Role::Worker, true),
            Host::new("broker0", Role::Broker, true),
            Host::new("client", Role::Client, true),
        ],
    }
}

#[test]
fn specs_parse_into_when_action_target() {
    let f: Fault = "20s:kill:worker0".parse().unwrap();
    assert_eq!(f.when, When::At(Duration::from_secs(20)));
    assert_eq!(f.action, Action::Kill);
    assert_eq!(f.target, "worker0");
    let f: Fault = "every=1.5s:pause:api0".parse().unwrap();
    assert_eq!(f.when, When::Every(Duration::from_millis(1500)));
    assert_eq!(f.action, Action::Pause);
    let f: Fault = "30:restart:broker0".parse().unwrap();
    assert_eq!(f.when, When::At(Duration::from_secs(30)));
    let f: Fault = "500ms:resume:api1".parse().unwrap();
    assert_eq!(f.when, When::At(Duration::from_millis(500)));
    assert_eq!(f.to_string(), "0.5s:resume:api1");
}

#[test]
fn bad_specs_say_what_is_wrong() {
    for (spec, says) in [
        ("20s:kill", "names no target host"),
        ("20s:kill:a:b", "kill takes no value (':b')"),
        ("20s:kill:a:b:c", "is not WHEN:ACTION:TARGET"),
        ("20s:heal:api0", "heal takes no target"),
        ("20s:loss:client", "loss needs a share: loss:HOST:5%"),
        ("20s:loss:client:5", "write a percentage from 0% to 100%"),
        ("20s:loss:client:150%", "from 0% to 100%"),
        ("20s:rate:client:fast", "not a link rate"),
        ("20s:partition:client", "name two sides, SIDE/SIDE"),
        ("20s:partition:client/", "name two sides"),
        ("20s:partition:a/b/c", "name two sides"),
        ("soon:kill:worker0", "'soon' is not a time"),
        ("-1:kill:worker0", "0 s or more"),
        (
            "20s:explode:worker0",
            "unknown action 'explode'; the actions are kill, stop",
        ),
        ("every=10ms:kill:worker0", "too often"),
        ("20s:kill:", "names no target"),
    ] {
        let error = spec.parse::<Fault>().unwrap_err();
        assert!(error.contains(says), "{spec}: {error}");
    }
}

#[test]
fn network_specs_parse_with_their_amounts() {
    let f: Fault = "20s:loss:client:5%".parse().unwrap();
    assert_eq!(
        (f.action, f.amount),
        (Action::Loss, Some(Amount::Share(0.05)))
    );
    assert_eq!(f.to_string(), "20s:loss:client:5%");
    let f: Fault = "20s:rate:api0:1mbit".parse().unwrap();
    assert_eq!(f.to_string(), "20s:rate:api0:1mbit");
    let f: Fault = "25s:heal".parse().unwrap();
    assert_eq!((f.action, f.target.as_str()), (Action::Heal, ""));
    assert_eq!(f.to_string(), "25s:heal");
    let f: Fault = "20s:partition:broker0/broker1,broker2".parse().unwrap();
    assert_eq!(f.target, "broker0/broker1,broker2");
}

#[test]
fn network_faults_need_the_network_and_hosts_of_the_run() {
    let plan = |spec: &str| FaultPlan {
        faults: vec![spec.parse().unwrap()],
    };
    let error = plan("1s:partition:worker0/broker")
        .check(&topology(), false)
        .unwrap_err();
    assert!(error.to_string().contains("add --network"), "{error}");
    // The client and roles are fine targets on the network.
    assert!(
        plan("1s:partition:worker0/broker")
            .check(&topology(), true)
            .is_ok()
    );
    assert!(plan("1s:loss:client:5%").check(&topology(), true).is_ok());
    assert!(plan("1s:heal").check(&topology(), true).is_ok());
    let error = plan("1s:isolate:api0")
        .check(&topology(), true)
        .unwrap_err();
    assert!(matches!(&error, PlanError::NoSuchHost { host, .. } if host == "api0"));
    let error = plan("1s:partition:broker/broker0")
        .check(&topology(), true)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "--fault 1s:partition:broker/broker0: broker0 is on both sides of the partition"
    );
    let f: Fault = "1s:partition:worker0,client/broker".parse().unwrap();
    let (a, b) = network_targets(&f, &topology()).unwrap();
    assert_eq!(
        (a, b),
        (
            vec!["worker0".to_string(), "client".to_string()],
            vec!["broker0".to_string()]
        )
    );
}

#[test]
fn the_plan_is_checked_against_the_topology() {
    let plan = |spec: &str| FaultPlan {
        faults: vec![spec.parse().unwrap()],
    };
    assert!(plan("1s:kill:worker0").check(&topology(), false).is_ok());
    assert!(plan("1s:pause:broker0").check(&topology(), false).is_ok());
    let error = plan("1s:kill:api0").check(&topology(), false).unwrap_err();
    assert!(matches!(&error, PlanError::NoSuchHost { host, .. } if host == "api0"));
    assert_eq!(
        error.to_string(),
        "--fault 1s:kill:api0: this run has no host 'api0'; its hosts are worker0, broker0, client"
    );
    let error = plan("1s:kill:client")
        .check(&topology(), false)
        .unwrap_err();
    assert!(matches!(
        error,
        PlanError::NoFaultsFor {
            role: Role::Client,
            ..
        }
    ));
    assert!(
        error.to_string().contains("the client is the lab itself"),
        "{error}"
    );
    let mut remote = topology();
    remote.hosts[1].spawned = false;
    let error = plan("1s:restart:broker0")
        .check(&remote, false)
        .unwrap_err();
    assert!(matches!(&error, PlanError::NotStarted { host, .. } if host == "broker0"));
    assert!(
        error.to_string().contains("the lab did not start broker0"),
        "{error}"
    );
    assert!(plan("1s:kill:worker0").kills_a_server(&topology()));
    assert!(!plan("1s:kill:broker0").kills_a_server(&topology()));
}

#[test]
fn a_plan_file_is_toml_with_at_or_every() {
    let text = r#"
        [[fault]]
        at = "2s"
        action = "pause"
        target = "api0"

        [[fault]]
        at = 4
        action = "resume"
        target = "api0"

        [[fault]]
        every = "20s"
        action = "kill"
        target = "worker0"
    "#;
    let plan = parse_file("faults.toml", text).unwrap();
    let specs: Vec<String> = plan.faults.iter().map(Fault::to_string).collect();
    assert_eq!(
        specs,
        ["2s:pause:api0", "4s:resume:api0", "every=20s:kill:worker0"]
    );
}

#[test]
fn a_bad_plan_file_names_the_file_and_the_fault() {
    for (text, says) in [
        (
            "[[fault]]\naction = \"kill\"\ntarget = \"api0\"\n",
            "faults.toml: fault 1: give `at` or `every`",
        ),
        (
            "[[fault]]\nat = 1\nevery = 2\naction = \"kill\"\ntarget = \"api0\"\n",
            "give `at` or `every`, one of them",
        ),
        (
            "[[fault]]\nat = 1\naction = \"zap\"\ntarget = \"api0\"\n",
            "fault 1: unknown action 'zap'",
        ),
        (
            "[[fault]]\nat = 1\naction = \"kill\"\ntarget = \"api0\"\nwhen = 3\n",
            "faults.toml:",
        ),
        ("[[fault]\n", "faults.toml:1:"),
    ] {
        let error = parse_file("faults.toml", text).unwrap_err();
        assert!(error.contains(says), "{text:?}: {error}");
    }
}
