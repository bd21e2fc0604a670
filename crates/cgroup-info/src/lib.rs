//! Which cgroups this process is in and where they are mounted, and what their limit
//! files say: the facts both the API's automatic sizing (`purchasing-api`, reading the
//! limits it runs under) and the lab's confinement (`loadtest`, creating child cgroups
//! under its own) need, defined once here because neither of those crates may depend on
//! the other (the lab only spawns servers, it never links them).
//!
//! This crate owns:
//!
//! * [`Cgroups::locate`] — this process's cgroup directories from `/proc/self/cgroup`
//!   and `/proc/self/mountinfo`: the unified (v2) hierarchy and the v1 `memory` and `cpu`
//!   hierarchies (hybrid layouts included), also where a mount shows only a subtree (a
//!   container), with each directory's [`CgroupDir::lineage`] up to its mount point;
//! * [`parse_mountinfo`] and [`unescape_mountinfo`] — the cgroup mounts of
//!   `/proc/self/mountinfo`, with its octal escapes (`\040` for a space) decoded;
//! * the limit files: [`parse_v2_memory_max`] (`memory.max`), [`parse_v2_cpu_max`]
//!   (`cpu.max`), [`parse_v1_memory_limit`] (`memory.limit_in_bytes`) and
//!   [`parse_v1_cpu_quota`] (`cpu.cfs_quota_us` and `cpu.cfs_period_us`), and the
//!   smallest limit over a cgroup and its ancestors ([`Cgroups::memory_limit`],
//!   [`Cgroups::cpu_limit`]), which is the one that binds.
//!
//! Reading is kept apart from parsing: callers pass the files' text (or a function that
//! reads a path), so every rule is unit-tested from strings without a confined process.
//! std only.

// No unsafe code here (it reads files); kept that way by the compiler.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// cgroup v1 reports "no limit" as the largest page-aligned `i64`
/// (9223372036854771712 with 4 KiB pages, a little less with larger pages); anything
/// from 2^62 bytes (4 EiB) up is treated as no limit.
const V1_NO_LIMIT_FROM: u64 = 1 << 62;

/// A limit and where it came from, for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit<T> {
    pub value: T,
    pub source: String,
}

/// The smallest of some byte limits.
pub fn smallest(limits: impl Iterator<Item = Limit<u64>>) -> Option<Limit<u64>> {
    limits.min_by_key(|l| l.value)
}

/// The smallest of some fractional limits (CPUs).
pub fn smallest_f64(limits: impl Iterator<Item = Limit<f64>>) -> Option<Limit<f64>> {
    limits.min_by(|a, b| a.value.total_cmp(&b.value))
}

/// cgroup v2 `memory.max`: bytes, or `max` for none.
pub fn parse_v2_memory_max(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        n => n.parse().ok(),
    }
}

/// cgroup v1 `memory.limit_in_bytes`: bytes, with a huge value meaning none.
pub fn parse_v1_memory_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&bytes| bytes < V1_NO_LIMIT_FROM)
}

/// cgroup v2 `cpu.max`: `QUOTA PERIOD` in µs, or `max PERIOD` for none. In CPUs.
pub fn parse_v2_cpu_max(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    let quota = words.next()?;
    let period: f64 = words.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    if quota == "max" {
        return None;
    }
    cpus_from_quota(quota.parse().ok()?, period)
}

/// cgroup v1 `cpu.cfs_quota_us` (-1 for none) and `cpu.cfs_period_us`. In CPUs.
pub fn parse_v1_cpu_quota(quota_us: &str, period_us: &str) -> Option<f64> {
    let quota: f64 = quota_us.trim().parse().ok()?;
    let period: f64 = period_us.trim().parse().ok()?;
    cpus_from_quota(quota, period)
}

fn cpus_from_quota(quota: f64, period: f64) -> Option<f64> {
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// This process's cgroup directories: in the unified (v2) hierarchy and in the v1
/// `memory` and `cpu` hierarchies, each with the mount point that bounds its ancestry.
#[derive(Debug, Default, PartialEq)]
pub struct Cgroups {
    pub v2: Option<CgroupDir>,
    pub v1_memory: Option<CgroupDir>,
    pub v1_cpu: Option<CgroupDir>,
}

/// A cgroup directory and the mount point of its hierarchy (the highest ancestor this
/// process can see).
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupDir {
    pub mount_point: PathBuf,
    pub dir: PathBuf,
}

impl CgroupDir {
    /// The directory and each ancestor up to the mount point, nearest first.
    pub fn lineage(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.dir.clone()];
        let mut current = self.dir.as_path();
        while current != self.mount_point {
            match current.parent() {
                Some(parent) if parent.starts_with(&self.mount_point) => {
                    dirs.push(parent.to_path_buf());
                    current = parent;
                }
                _ => break,
            }
        }
        dirs
    }
}

impl Cgroups {
    /// Finds this process's cgroups from `/proc/self/mountinfo` and `/proc/self/cgroup`
    /// (`ID:CONTROLLERS:PATH` lines; an empty controller list is the v2 hierarchy).
    pub fn locate(mountinfo: &str, membership: &str) -> Self {
        let mounts = parse_mountinfo(mountinfo);
        let mut cgroups = Cgroups::default();
        for line in membership.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                cgroups.v2 = cgroups.v2.or_else(|| {
                    mounts
                        .iter()
                        .filter(|m| m.fstype == "cgroup2")
                        .find_map(|m| m.locate(path))
                });
                continue;
            }
            for controller in controllers.split(',') {
                let slot = match controller {
                    "memory" => &mut cgroups.v1_memory,
                    "cpu" => &mut cgroups.v1_cpu,
                    _ => continue,
                };
                // The first mount of that hierarchy that shows our cgroup (a hierarchy
                // may be mounted several times, some showing only a subtree).
                *slot = slot.take().or_else(|| {
                    mounts
                        .iter()
                        .filter(|m| {
                            m.fstype == "cgroup"
                                && m.super_options.split(',').any(|o| o == controller)
                        })
                        .find_map(|m| m.locate(path))
                });
            }
        }
        cgroups
    }

    /// The smallest memory limit over our cgroups and their ancestors, both hierarchies.
    pub fn memory_limit(&self, read: &dyn Fn(&Path) -> Option<String>) -> Option<Limit<u64>> {
        let v2 = self.v2.iter().flat_map(|c| c.lineage()).filter_map(|dir| {
            let value = parse_v2_memory_max(&read(&dir.join("memory.max"))?)?;
            Some(Limit {
                value,
                source: format!("cgroup v2 {}", dir.join("memory.max").display()),
            })
        });
        let v1 = self
            .v1_memory
            .iter()
            .flat_map(|c| c.lineage())
            .filter_map(|dir| {
                let file = dir.join("memory.limit_in_bytes");
                let value = parse_v1_memory_limit(&read(&file)?)?;
                Some(Limit {
                    value,
                    source: format!("cgroup v1 {}", file.display()),
                })
            });
        smallest(v2.chain(v1))
    }

    /// The smallest CPU quota over our cgroups and their ancestors, both hierarchies.
    pub fn cpu_limit(&self, read: &dyn Fn(&Path) -> Option<String>) -> Option<Limit<f64>> {
        let v2 = self.v2.iter().flat_map(|c| c.lineage()).filter_map(|dir| {
            let file = dir.join("cpu.max");
            let value = parse_v2_cpu_max(&read(&file)?)?;
            Some(Limit {
                value,
                source: format!("cgroup v2 {}", file.display()),
            })
        });
        let v1 = self
            .v1_cpu
            .iter()
            .flat_map(|c| c.lineage())
            .filter_map(|dir| {
                let quota = read(&dir.join("cpu.cfs_quota_us"))?;
                let period = read(&dir.join("cpu.cfs_period_us"))?;
                let value = parse_v1_cpu_quota(&quota, &period)?;
                Some(Limit {
                    value,
                    source: format!("cgroup v1 {}", dir.join("cpu.cfs_quota_us").display()),
                })
            });
        smallest_f64(v2.chain(v1))
    }
}

/// One cgroup mount of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// The directory of the hierarchy shown at the mount point (`/` unless the mount
    /// shows only a subtree, as in a container).
    pub root: String,
    pub mount_point: PathBuf,
    /// `cgroup` (v1) or `cgroup2`.
    pub fstype: String,
    /// For v1, the controllers of the hierarchy among them (e.g. `rw,cpu,cpuacct`).
    pub super_options: String,
}

impl Mount {
    /// Our cgroup `path` (as in /proc/self/cgroup) under this mount, when the mount
    /// shows it: its root is `path` or an ancestor of it (a container may see only its
    /// own subtree).
    pub fn locate(&self, path: &str) -> Option<CgroupDir> {
        let relative = if self.root == "/" {
            path
        } else if path == self.root {
            ""
        } else {
            path.strip_prefix(&self.root)
                .filter(|rest| rest.starts_with('/'))?
        };
        let relative = relative.trim_start_matches('/');
        let dir = if relative.is_empty() {
            self.mount_point.clone()
        } else {
            self.mount_point.join(relative)
        };
        Some(CgroupDir {
            mount_point: self.mount_point.clone(),
            dir,
        })
    }
}

/// The cgroup mounts of /proc/self/mountinfo, whose lines read
/// `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 5 || right.len() < 3 || !matches!(right[0], "cgroup" | "cgroup2") {
                return None;
            }
            Some(Mount {
                root: unescape_mountinfo(left[3]),
                mount_point: PathBuf::from(unescape_mountinfo(left[4])),
                fstype: right[0].to_string(),
                super_options: right[2].to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
pub fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn cgroup_file_values() {
        assert_eq!(parse_v2_memory_max("max\n"), None);
        assert_eq!(parse_v2_memory_max("2147483648\n"), Some(2 * GIB));
        assert_eq!(parse_v1_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_v1_memory_limit("9223372036854710272\n"), None); // 64 KiB pages
        assert_eq!(parse_v1_memory_limit("2147483648\n"), Some(2 * GIB));
        assert_eq!(parse_v1_memory_limit("garbage"), None);
        assert_eq!(parse_v2_cpu_max("max 100000\n"), None);
        assert_eq!(parse_v2_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_v2_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_v1_cpu_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_v1_cpu_quota("100000\n", "100000\n"), Some(1.0));
        assert_eq!(parse_v1_cpu_quota("150000", "100000"), Some(1.5));
    }

    // A hybrid layout: cgroup v1 controllers plus an empty unified hierarchy, and the
    // process in a nested memory cgroup.
    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/abc/lab-1
2:cpuacct:/
1:cpu:/lab-1
0::/
";

    fn fake_fs(files: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.to_string()))
            .collect();
        move |path: &Path| files.get(path).cloned()
    }

    #[test]
    fn finds_our_cgroups_in_a_hybrid_layout() {
        let membership =
            "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let cgroups = Cgroups::locate(HYBRID_MOUNTINFO, membership);
        let dir = |c: &Option<CgroupDir>| c.as_ref().map(|c| c.dir.clone());
        assert_eq!(
            dir(&cgroups.v2),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            dir(&cgroups.v1_memory),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert_eq!(
            dir(&cgroups.v1_cpu),
            Some(PathBuf::from("/sys/fs/cgroup/cpu"))
        );
    }

    #[test]
    fn hybrid_layout_takes_the_smallest_limit_over_the_ancestors() {
        let cgroups = Cgroups::locate(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let memory = cgroups.v1_memory.clone().unwrap();
        assert_eq!(
            memory.lineage(),
            [
                "/sys/fs/cgroup/memory/process_api/abc/lab-1",
                "/sys/fs/cgroup/memory/process_api/abc",
                "/sys/fs/cgroup/memory/process_api",
                "/sys/fs/cgroup/memory",
            ]
            .map(PathBuf::from)
        );
        let read = fake_fs(&[
            // The innermost cgroup is unlimited; an ancestor limits it to 2 GiB; a
            // higher one to 8 GiB.
            (
                "/sys/fs/cgroup/memory/process_api/abc/lab-1/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
                "2147483648\n",
            ),
            (
                "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
                "8589934592\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("/sys/fs/cgroup/cpu/lab-1/cpu.cfs_quota_us", "100000\n"),
            ("/sys/fs/cgroup/cpu/lab-1/cpu.cfs_period_us", "100000\n"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        ]);
        let limit = cgroups.memory_limit(&read).unwrap();
        assert_eq!(limit.value, 2 * GIB);
        assert!(
            limit
                .source
                .contains("process_api/abc/memory.limit_in_bytes")
        );
        assert_eq!(cgroups.cpu_limit(&read).unwrap().value, 1.0);
        // The unified hierarchy has no controllers here: no files, no limit from it.
        assert_eq!(
            cgroups.v2.as_ref().unwrap().dir,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn unified_layout_reads_memory_max_and_cpu_max() {
        let mountinfo = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let cgroups = Cgroups::locate(mountinfo, "0::/system.slice/lab.service\n");
        let read = fake_fs(&[
            (
                "/sys/fs/cgroup/system.slice/lab.service/memory.max",
                "max\n",
            ),
            (
                "/sys/fs/cgroup/system.slice/lab.service/cpu.max",
                "max 100000\n",
            ),
            ("/sys/fs/cgroup/system.slice/memory.max", "1073741824\n"),
            ("/sys/fs/cgroup/system.slice/cpu.max", "150000 100000\n"),
        ]);
        assert_eq!(cgroups.memory_limit(&read).unwrap().value, GIB);
        assert_eq!(cgroups.cpu_limit(&read).unwrap().value, 1.5);
        assert_eq!(cgroups.v1_memory, None);
    }

    #[test]
    fn finds_our_cgroup_in_a_unified_layout_and_under_a_namespaced_root() {
        let mountinfo = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let cgroups = Cgroups::locate(mountinfo, "0::/user.slice/user-0.slice/session-1.scope\n");
        assert_eq!(
            cgroups.v2.map(|c| c.dir),
            Some(PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-0.slice/session-1.scope"
            ))
        );
        assert_eq!((cgroups.v1_memory, cgroups.v1_cpu), (None, None));

        // A container whose cgroup mounts show only its own subtree.
        let mountinfo = "40 31 0:32 /docker/xyz /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n\
                         41 31 0:29 /docker/xyz /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n";
        let cgroups = Cgroups::locate(
            mountinfo,
            "4:memory:/docker/xyz/sub\n1:cpu,cpuacct:/docker/xyz\n",
        );
        assert_eq!(
            cgroups.v1_memory.map(|c| c.dir),
            Some(PathBuf::from("/sys/fs/cgroup/memory/sub"))
        );
        assert_eq!(
            cgroups.v1_cpu.map(|c| c.dir),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        // A cgroup outside the mount's root cannot be located.
        let cgroups = Cgroups::locate(mountinfo, "4:memory:/other\n");
        assert_eq!((cgroups.v1_memory, cgroups.v1_cpu), (None, None));
    }

    #[test]
    fn no_limit_anywhere_is_none() {
        let cgroups = Cgroups::locate(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let read = fake_fs(&[]);
        assert_eq!(cgroups.memory_limit(&read), None);
        assert_eq!(cgroups.cpu_limit(&read), None);
        assert_eq!(Cgroups::locate("", ""), Cgroups::default());
    }

    #[test]
    fn a_container_sees_only_its_subtree() {
        let mountinfo =
            "40 31 0:32 /docker/xyz /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        let cgroups = Cgroups::locate(mountinfo, "4:memory:/docker/xyz/sub\n");
        let memory = cgroups.v1_memory.unwrap();
        assert_eq!(memory.dir, PathBuf::from("/sys/fs/cgroup/memory/sub"));
        assert_eq!(memory.lineage().len(), 2);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape_mountinfo(r"/trailing\04"), r"/trailing\04");
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
    }
}
