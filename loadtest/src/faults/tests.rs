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
        ("20s:kill", "is not WHEN:ACTION:TARGET"),
        ("20s:kill:a:b", "is not WHEN:ACTION:TARGET"),
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
fn the_plan_is_checked_against_the_topology() {
    let plan = |spec: &str| FaultPlan {
        faults: vec![spec.parse().unwrap()],
    };
    assert!(plan("1s:kill:worker0").check(&topology()).is_ok());
    assert!(plan("1s:pause:broker0").check(&topology()).is_ok());
    let error = plan("1s:kill:api0").check(&topology()).unwrap_err();
    assert!(matches!(&error, PlanError::NoSuchHost { host, .. } if host == "api0"));
    assert_eq!(
        error.to_string(),
        "--fault 1s:kill:api0: this run has no host 'api0'; its hosts are worker0, broker0, client"
    );
    let error = plan("1s:kill:client").check(&topology()).unwrap_err();
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
    let error = plan("1s:restart:broker0").check(&remote).unwrap_err();
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
