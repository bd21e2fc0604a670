use std::io;

use super::ConfineError;
use super::error::io_error;
use super::{cgroup::*, cores::*, files::*, limits::*};

#[test]
fn memory_sizes() {
    let cases: &[(&str, u64)] = &[
        ("2G", 2 << 30),
        ("2g", 2 << 30),
        ("2GiB", 2 << 30),
        ("2GB", 2 << 30),
        ("512M", 512 << 20),
        ("1.5G", 3 << 29),
        ("64MiB", 64 << 20),
        ("4k", 4096),
        ("1048576", 1_048_576),
        ("100B", 100),
        (" 3 M ", 3 << 20),
        ("1T", 1 << 40),
    ];
    for (text, bytes) in cases {
        assert_eq!(parse_memory_size(text), Ok(*bytes), "{text}");
    }
    for junk in [
        "",
        "0",
        "0M",
        "-1G",
        "G",
        "abc",
        "1.2.3G",
        "2X",
        "1.5",
        "1e9",
        "99999999999999999999",
        "20000000000T",
    ] {
        let error = parse_memory_size(junk).expect_err(junk);
        assert!(error.contains("invalid memory size"), "{junk}: {error}");
    }
}

#[test]
fn bytes_are_formatted_in_binary_units() {
    assert_eq!(format_bytes(2 << 30), "2.0 GiB");
    assert_eq!(format_bytes(64 << 20), "64.0 MiB");
    assert_eq!(format_bytes(1536), "1.5 KiB");
    assert_eq!(format_bytes(12), "12 B");
}

#[test]
fn limits_are_validated() {
    assert!(
        Limits {
            cpus: Some(0.0),
            memory_bytes: None
        }
        .validate()
        .is_err()
    );
    assert!(
        Limits {
            cpus: Some(f64::NAN),
            memory_bytes: None
        }
        .validate()
        .is_err()
    );
    assert!(
        Limits {
            cpus: None,
            memory_bytes: Some(0)
        }
        .validate()
        .is_err()
    );
    for tiny in [1, 4096, MIN_MEMORY_BYTES - 1] {
        let error = Limits {
            cpus: Some(0.5),
            memory_bytes: Some(tiny),
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(error.contains("at least 16.0 MiB"), "{error}");
    }
    assert!(
        Limits {
            cpus: Some(0.5),
            memory_bytes: Some(MIN_MEMORY_BYTES)
        }
        .validate()
        .is_ok()
    );
    assert_eq!(cpu_quota_us(1.0), 10_000);
    assert_eq!(cpu_quota_us(0.5), 5_000);
    assert_eq!(cpu_quota_us(2.5), 25_000);
    assert_eq!(
        Limits {
            cpus: Some(1.0),
            memory_bytes: Some(2 << 30)
        }
        .to_string(),
        "1 CPU, 2.0 GiB"
    );
}

#[test]
fn cores_are_the_last_ones_and_only_when_fewer_than_all() {
    let two = [0, 1];
    assert_eq!(pick_cores(&two, 1.0), Some(&[1][..]));
    assert_eq!(
        pick_cores(&two, 0.5),
        Some(&[1][..]),
        "a fraction takes a core"
    );
    assert_eq!(pick_cores(&two, 2.0), None, "all of them: nothing to pin");
    assert_eq!(pick_cores(&two, 3.0), None);
    let sparse = [0, 2, 5, 7];
    assert_eq!(pick_cores(&sparse, 1.5), Some(&[5, 7][..]));
    assert_eq!(pick_cores(&[], 1.0), None);
}

#[test]
fn the_cores_left_beside_confined_children_are_the_labs_side() {
    let four = [0, 1, 2, 3];
    assert_eq!(cores_left(&four, 1.0, 1), Some(vec![0, 1, 2]));
    assert_eq!(cores_left(&four, 1.0, 2), Some(vec![0, 1]));
    assert_eq!(
        cores_left(&four, 1.5, 2),
        None,
        "two children of 2 cores take all four"
    );
    let two = [0, 1];
    assert_eq!(cores_left(&two, 1.0, 1), Some(vec![0]));
    assert_eq!(
        cores_left(&two, 1.0, 2),
        None,
        "nothing left: brokers share"
    );
    assert_eq!(cores_left(&two, 2.0, 1), None, "the child is not pinned");
}

#[test]
fn side_by_side_children_get_cores_of_their_own_then_share() {
    let four = [0, 1, 2, 3];
    assert_eq!(pick_cores_in_slot(&four, 1.0, 0), Some(vec![3]));
    assert_eq!(pick_cores_in_slot(&four, 1.0, 1), Some(vec![2]));
    assert_eq!(pick_cores_in_slot(&four, 2.0, 1), Some(vec![0, 1]));
    let two = [0, 1];
    assert_eq!(pick_cores_in_slot(&two, 1.0, 0), Some(vec![1]));
    assert_eq!(pick_cores_in_slot(&two, 1.0, 1), Some(vec![0]));
    assert_eq!(
        pick_cores_in_slot(&two, 1.0, 2),
        Some(vec![1]),
        "wraps: shares"
    );
    assert_eq!(pick_cores_in_slot(&two, 2.0, 0), None);
    assert_eq!(Cores::of(&[1]).to_string(), "core 1");
    assert_eq!(Cores::of(&[5, 7]).to_string(), "cores 5,7");
    let set = Cores::of(&[5, 7]).set;
    assert_eq!(set.is_set(7), Ok(true));
    assert_eq!(set.is_set(6), Ok(false));
}

#[test]
fn keyed_values() {
    let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
    assert_eq!(keyed_value(text, "oom_kill"), Some(3));
    assert_eq!(keyed_value(text, "missing"), None);
}

#[test]
fn a_cgroup_that_cannot_be_made_says_what_to_do_in_one_line() {
    let errors = [
        io_error(
            "creating /sys/fs/cgroup/loadtest-1",
            io::Error::from_raw_os_error(libc::EACCES),
        ),
        io_error(
            "creating /sys/fs/cgroup/loadtest-1",
            io::Error::from_raw_os_error(libc::EROFS),
        ),
        ConfineError::Unsupported(
            "the cgroup v2 controller \"memory\" is not available in /sys/fs/cgroup/user.slice"
                .into(),
        ),
    ];
    for error in errors {
        assert!(error.is_not_permitted(), "{error}");
        let text = error.to_string();
        assert!(!text.contains('\n'), "one line: {text}");
        assert!(text.starts_with("cannot confine: "), "{text}");
        // What failed, then both ways out: root, or systemd's delegated scope without
        // the lab's own limits.
        assert!(text.contains("run as root"), "{text}");
        assert!(
            text.contains(
                "drop --cpus/--memory and let systemd confine the whole lab (the load generator too) in a delegated scope: \
                 systemd-run --user --scope -p MemoryMax=2G -p CPUQuota=100% loadtest run ..."
            ),
            "{text}"
        );
    }
    let denied = io_error(
        "creating /sys/fs/cgroup/x",
        io::Error::from_raw_os_error(libc::EACCES),
    );
    assert!(
        denied
            .to_string()
            .starts_with("cannot confine: creating /sys/fs/cgroup/x failed: Permission denied"),
        "{denied}"
    );
    // Bad limits are the user's to fix, not the machine's: no advice about root.
    let bad = ConfineError::InvalidLimits("--memory must be at least 16 MiB".into());
    assert!(!bad.is_not_permitted());
    assert!(!bad.to_string().contains("root"), "{bad}");
}
