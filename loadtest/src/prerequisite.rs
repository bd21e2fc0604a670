//! The one rule for tests whose prerequisite this machine may lack (cgroups, root, a
//! program such as rabbitmq-server or haproxy): skips that cannot hide.
//!
//! When the prerequisite is there, the test gets what it needs and runs. When it is
//! missing, the test
//! - **fails under CI** (the `CI` environment variable set and not empty), with one line
//!   saying what is missing and how to get it: CI runs as root with cgroups and installs
//!   the programs (`scripts/test`), so a missing prerequisite there is a broken CI, and a
//!   CI that passed by skipping would show green having tested nothing;
//! - **prints one line elsewhere** and returns: `SKIPPED: <test>: <what is missing>: <how
//!   to get it>`, on the real stderr (not the harness's captured output, so it shows even
//!   though the test passes).
//!
//! ```no_run
//! # fn a_test() {
//! if !loadtest::prerequisite::cgroups() {
//!     return;
//! }
//! # }
//! ```
//!
//! [`require`] is the rule; the module that knows a prerequisite says how to find it and
//! what to do when it is missing, e.g. [`crate::broker::require_installed_or_skip`] for
//! RabbitMQ, and [`cgroup`] here for cgroups. The test is named after the thread it runs
//! on: the test harness names each test's thread after the test (a `#[tokio::test]` body
//! runs on that thread too).

use std::io::Write as _;

use crate::confine::{CONFINE_REQUIREMENTS, Cgroup, Limits};

/// A prerequisite that is missing: what, and how to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What is missing, e.g. "haproxy is not installed (/usr/sbin/haproxy is missing)".
    pub what: String,
    /// How to get it, e.g. "run scripts/test as root".
    pub how: String,
}

/// The rule: the prerequisite when `found` has it; otherwise fails the test under CI and
/// prints the SKIPPED line elsewhere (see the module doc), returning `None`.
pub fn require<T>(found: Result<T, Missing>) -> Option<T> {
    let missing = match found {
        Ok(found) => return Some(found),
        Err(missing) => missing,
    };
    match decide(&current_test(), &missing, under_ci()) {
        Decision::Fail(message) => panic!("{message}"),
        Decision::Skip(line) => {
            let _ = writeln!(std::io::stderr(), "{line}");
            None
        }
    }
}

/// A new cgroup with `limits`, under [`require`]'s rule when this machine does not permit
/// cgroups (not root, controllers missing, read-only cgroup file system). Any other error
/// (bad limits, say) fails the test everywhere.
pub fn cgroup(limits: &Limits) -> Option<Cgroup> {
    match Cgroup::create(limits) {
        Ok(cgroup) => Some(cgroup),
        Err(e) if e.is_not_permitted() => {
            // The error ends with the requirements, which are the line's "how" part.
            let what = e.to_string();
            let what = what
                .strip_suffix(&format!("; {CONFINE_REQUIREMENTS}"))
                .unwrap_or(&what);
            require(Err(Missing {
                what: what.to_string(),
                how: CONFINE_REQUIREMENTS.to_string(),
            }))
        }
        Err(e) => panic!("creating a cgroup failed: {e}"),
    }
}

/// True when cgroups with a CPU quota and a memory limit can be created here (probed with
/// a throwaway cgroup); otherwise [`require`]'s rule, and false.
pub fn cgroups() -> bool {
    cgroup(&Limits {
        cpus: Some(1.0),
        memory_bytes: Some(64 * 1024 * 1024),
    })
    .is_some()
}

/// True when this machine can give hosts networks of their own (root, `ip`, `iptables`,
/// `tc`: [`crate::network::check_prerequisites`]); otherwise [`require`]'s rule, and false.
pub fn network() -> bool {
    use crate::network::{NETWORK_REQUIREMENTS, NetworkError, check_prerequisites};
    let found = check_prerequisites().map_err(|e| {
        let what = match e {
            NetworkError::Missing(what) => what,
            other => other.to_string(),
        };
        let what = what
            .strip_suffix(&format!("; {NETWORK_REQUIREMENTS}"))
            .unwrap_or(&what);
        Missing {
            what: what.to_string(),
            how: NETWORK_REQUIREMENTS.to_string(),
        }
    });
    require(found).is_some()
}

/// What [`require`] does with a missing prerequisite.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// Under CI: the test fails with this message.
    Fail(String),
    /// Elsewhere: this line is printed and the test returns.
    Skip(String),
}

fn decide(test: &str, missing: &Missing, ci: bool) -> Decision {
    let Missing { what, how } = missing;
    if ci {
        Decision::Fail(format!(
            "{test} cannot run here: {what}: {how} (CI is set, so this test fails instead of skipping)"
        ))
    } else {
        Decision::Skip(format!("SKIPPED: {test}: {what}: {how}"))
    }
}

fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The running test's name: the harness names each test's thread after it.
fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this test".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn haproxy_missing() -> Missing {
        Missing {
            what: "haproxy is not installed (/usr/sbin/haproxy is missing)".to_string(),
            how: "run scripts/test as root".to_string(),
        }
    }

    #[test]
    fn a_missing_prerequisite_skips_outside_ci_and_fails_under_ci() {
        assert_eq!(
            decide("t", &haproxy_missing(), false),
            Decision::Skip(
                "SKIPPED: t: haproxy is not installed (/usr/sbin/haproxy is missing): \
                 run scripts/test as root"
                    .to_string()
            )
        );
        assert_eq!(
            decide("t", &haproxy_missing(), true),
            Decision::Fail(
                "t cannot run here: haproxy is not installed (/usr/sbin/haproxy is missing): \
                 run scripts/test as root (CI is set, so this test fails instead of skipping)"
                    .to_string()
            )
        );
    }

    #[test]
    fn a_present_prerequisite_is_handed_over() {
        assert_eq!(require(Ok::<_, Missing>(7)), Some(7));
    }

    #[test]
    fn the_test_is_named_after_its_thread() {
        assert_eq!(
            current_test(),
            "prerequisite::tests::the_test_is_named_after_its_thread"
        );
    }
}
