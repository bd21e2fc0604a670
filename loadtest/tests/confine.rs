//! Confinement with real cgroups and real processes. Needs root and the cgroup v1 cpu and
//! memory controllers or cgroup v2 with cpu and memory; elsewhere each test prints one
//! "SKIPPED: <test>: …" line on stderr and returns, except under CI, where it fails
//! (`loadtest::prerequisite`).

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use loadtest::confine::{
    Cgroup, CgroupVersion, ConfineError, Limits, format_bytes, parse_memory_size, run_confined,
};
use loadtest::prerequisite;

const MIB: u64 = 1024 * 1024;

fn assert_removed(paths: &[PathBuf]) {
    for path in paths {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
}

/// A shell command that needs far more than 64 MiB: `tail -c` keeps the last 300 MiB of
/// its input in memory (coreutils only, no interpreter needed).
const ALLOCATE_300M: &str = "head -c 300M /dev/zero | tail -c 300M > /dev/null";

#[test]
fn memory_sizes_are_parsed_in_binary_units() {
    let cases: &[(&str, u64)] = &[
        ("2G", 2048 * MIB),
        ("512M", 512 * MIB),
        ("1.5G", 1536 * MIB),
        ("64MiB", 64 * MIB),
        ("64mb", 64 * MIB),
        ("1048576", 1_048_576),
        ("16K", 16 * 1024),
    ];
    for (text, bytes) in cases {
        assert_eq!(parse_memory_size(text), Ok(*bytes), "{text}");
    }
    for junk in ["", "0", "0G", "-5M", "lots", "5 parsecs", "1..5G", "0.4"] {
        let error = parse_memory_size(junk).expect_err(junk);
        assert!(
            error.contains(junk.trim()) && error.contains("2G"),
            "{junk:?}: {error}"
        );
    }
    assert_eq!(format_bytes(2048 * MIB), "2.0 GiB");
}

#[test]
fn bad_limits_are_refused_before_touching_cgroups() {
    for limits in [
        Limits {
            cpus: Some(0.0),
            memory_bytes: None,
        },
        Limits {
            cpus: Some(-1.0),
            memory_bytes: None,
        },
        Limits {
            cpus: None,
            memory_bytes: Some(0),
        },
    ] {
        let error = Cgroup::create(&limits).expect_err("bad limits");
        assert!(matches!(error, ConfineError::InvalidLimits(_)), "{error}");
        assert!(!error.is_not_permitted());
    }
}

#[test]
fn a_cgroup_holds_the_limits_and_its_processes_and_is_removed_on_drop() {
    let limits = Limits {
        cpus: Some(0.5),
        memory_bytes: Some(64 * MIB),
    };
    let Some(cgroup) = prerequisite::cgroup(&limits) else {
        return;
    };
    let paths = cgroup.paths().to_vec();
    assert!(!paths.is_empty());
    for path in &paths {
        assert!(path.is_dir(), "{}", path.display());
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            name.starts_with(&format!("loadtest-{}-", std::process::id())),
            "{name}"
        );
    }

    // The files hold the values.
    let read = |file: &str| -> String {
        let path = paths
            .iter()
            .map(|p| p.join(file))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no {file} in {paths:?}"));
        std::fs::read_to_string(path).unwrap().trim().to_string()
    };
    match cgroup.cgroup_version() {
        CgroupVersion::V1 => {
            assert_eq!(cgroup.version(), "cgroup v1");
            assert_eq!(read("cpu.cfs_period_us"), "10000");
            assert_eq!(read("cpu.cfs_quota_us"), "5000");
            assert_eq!(read("memory.limit_in_bytes"), (64 * MIB).to_string());
            if paths
                .iter()
                .any(|p| p.join("memory.memsw.limit_in_bytes").exists())
            {
                assert_eq!(read("memory.memsw.limit_in_bytes"), (64 * MIB).to_string());
            }
        }
        CgroupVersion::V2 => {
            assert_eq!(cgroup.version(), "cgroup v2");
            assert_eq!(read("cpu.max"), "5000 10000");
            assert_eq!(read("memory.max"), (64 * MIB).to_string());
        }
    }
    assert_eq!(cgroup.cpu_limit(), Some(0.5));
    assert_eq!(cgroup.memory_limit_bytes(), Some(64 * MIB));
    assert_eq!(cgroup.oom_kills(), Some(0));
    assert!(cgroup.pids().is_empty());

    // A confined command and the processes it starts are in the cgroup from the start.
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "cat /proc/self/cgroup; grep Cpus_allowed_list /proc/self/status; sleep 0.1",
        ])
        .stdout(Stdio::piped());
    cgroup.confine_command(&mut command);
    let output = command.output().expect("run sh confined");
    assert!(output.status.success(), "{:?}", output.status);
    let membership = String::from_utf8(output.stdout).unwrap();
    let name = paths[0].file_name().unwrap().to_string_lossy().into_owned();
    let lines_in_cgroup: Vec<&str> = membership
        .lines()
        .filter(|line| line.ends_with(&format!("/{name}")))
        .collect();
    match cgroup.cgroup_version() {
        CgroupVersion::V1 => {
            assert!(
                lines_in_cgroup.iter().any(|l| l.contains(":memory:")),
                "{membership}"
            );
            assert!(
                lines_in_cgroup.iter().any(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .any(|c| c == "cpu")),
                "{membership}"
            );
        }
        CgroupVersion::V2 => {
            assert!(
                lines_in_cgroup.iter().any(|l| l.starts_with("0::")),
                "{membership}"
            );
        }
    }
    // The memory it used was charged to the cgroup.
    assert!(cgroup.memory_peak_bytes().is_some_and(|peak| peak > 0));
    // 0.5 CPU is one core: with more cores to choose from, the child is pinned to the
    // last of ours, like a one-vCPU VM; otherwise it keeps our affinity.
    let allowed = |status: &str| -> String {
        let line = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap_or_else(|| panic!("no Cpus_allowed_list in {status}"));
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    let ours = allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    let theirs = allowed(&membership);
    if ours.contains(['-', ',']) {
        assert!(!theirs.contains(['-', ',']), "one core, not {theirs}");
        assert_eq!(
            cgroup.describe(),
            format!("{}, pinned to core {theirs}", cgroup.version())
        );
    } else {
        assert_eq!(theirs, ours);
        assert_eq!(cgroup.describe(), cgroup.version());
    }

    drop(cgroup);
    assert_removed(&paths);
}

#[test]
fn the_memory_limit_is_enforced_by_the_oom_killer() {
    let limits = Limits {
        cpus: None,
        memory_bytes: Some(64 * MIB),
    };
    let Some(cgroup) = prerequisite::cgroup(&limits) else {
        return;
    };
    let paths = cgroup.paths().to_vec();
    let mut command = Command::new("sh");
    command.args(["-c", ALLOCATE_300M]);
    cgroup.confine_command(&mut command);
    let status = command.status().expect("run sh confined");
    // sh reports its child's death by SIGKILL as 128 + 9.
    assert!(
        status.code() == Some(137) || status.signal() == Some(9),
        "{status:?}"
    );
    assert!(cgroup.oom_kills().unwrap() >= 1);
    drop(cgroup);
    assert_removed(&paths);
}

#[test]
fn spawning_fails_loudly_when_the_cgroup_cannot_be_joined() {
    let limits = Limits {
        cpus: Some(1.0),
        memory_bytes: Some(64 * MIB),
    };
    let Some(cgroup) = prerequisite::cgroup(&limits) else {
        return;
    };
    let paths = cgroup.paths().to_vec();
    for path in &paths {
        std::fs::remove_dir(path).unwrap();
    }
    let mut command = Command::new("true");
    cgroup.confine_command(&mut command);
    let error = command
        .status()
        .expect_err("a command that cannot join its cgroup must not run");
    assert_eq!(error.raw_os_error(), Some(libc::ENOENT), "{error}");
    drop(cgroup); // already gone: dropping is quiet
    assert_removed(&paths);
}

#[test]
fn a_cgroup_is_removed_even_with_processes_left_inside() {
    let limits = Limits {
        cpus: None,
        memory_bytes: Some(64 * MIB),
    };
    let Some(cgroup) = prerequisite::cgroup(&limits) else {
        return;
    };
    let paths = cgroup.paths().to_vec();
    let mut command = Command::new("sleep");
    command.arg("30");
    cgroup.confine_command(&mut command);
    let mut child = command.spawn().expect("spawn sleep");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cgroup.pids().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(cgroup.pids(), vec![child.id() as i32]);
    drop(cgroup); // kills the sleep, then removes the directories
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    assert_removed(&paths);
}

#[test]
fn run_confined_returns_the_exit_code_and_reports_oom_kills() {
    let limits = Limits {
        cpus: Some(1.0),
        memory_bytes: Some(64 * MIB),
    };
    // Probe once: skip (or fail under CI) where cgroups cannot be created.
    let Some(probe) = prerequisite::cgroup(&limits) else {
        return;
    };
    drop(probe);
    let argv = |script: &str| -> Vec<OsString> {
        ["sh", "-c", script].iter().map(OsString::from).collect()
    };

    let code = run_confined(&limits, &argv("exit 3")).expect("run sh");
    assert_eq!(code, ExitCode::from(3));

    let code = run_confined(&limits, &argv(ALLOCATE_300M)).expect("run sh");
    assert_eq!(code, ExitCode::from(137));

    let code = run_confined(&limits, &argv("kill -TERM $$")).expect("run sh");
    assert_eq!(code, ExitCode::from(128 + 15));

    let error = run_confined(&limits, &[]).expect_err("no command");
    assert!(error.to_string().contains("after --"), "{error}");
    let error = run_confined(&limits, &[OsString::from("/nonexistent/command")])
        .expect_err("missing command");
    assert!(
        error.to_string().contains("/nonexistent/command"),
        "{error}"
    );
    let error = run_confined(&Limits::default(), &argv("true")).expect_err("no limits");
    assert!(error.to_string().contains("--memory"), "{error}");
}
