//! How near the process is to its memory limit: the limit and usage of its own memory cgroup
//! (v2 `memory.max` / `memory.current`, v1 `memory.limit_in_bytes` / `memory.usage_in_bytes`),
//! or a limit given in bytes (`DIAG_MEMORY_LIMIT_BYTES`) against the process's resident set.
//!
//! The cgroup is the process's own: its path from `/proc/self/cgroup`, under the mount point
//! `/proc/self/mountinfo` gives for that hierarchy (less the mount's root, as inside a
//! container). Usage is the cgroup's working set, `usage - inactive_file` (`memory.stat`), as
//! the kubelet and cAdvisor count it: page cache the kernel can drop before it kills anything
//! is not a step towards the limit. With cgroup v2 the limit is the smallest `memory.max` of
//! the cgroup and its ancestors up to the mount; with v1, the smaller of `memory.limit_in_bytes`
//! and `hierarchical_memory_limit`. `max` (v2), or a v1 value past 2^62 (v1's "unlimited" is
//! `i64::MAX` rounded down to a page), means no limit.
//!
//! Everything here runs on diag's capture thread; the parsers are pure, over the files' text.

use std::path::{Path, PathBuf};

/// Where the numbers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `DIAG_MEMORY_LIMIT_BYTES` (or the builder's), against the process's resident set.
    Override,
    /// The process's cgroup v2.
    CgroupV2,
    /// The process's cgroup v1 memory controller.
    CgroupV1,
}

impl Source {
    /// The name the index and the events give it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Source::Override => "rss",
            Source::CgroupV2 => "cgroup_v2",
            Source::CgroupV1 => "cgroup_v1",
        }
    }
}

/// Usage against a limit, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Memory {
    pub(crate) usage: u64,
    pub(crate) limit: u64,
    pub(crate) source: Source,
}

impl Memory {
    /// Usage as a percentage of the limit.
    pub(crate) fn percent(&self) -> f64 {
        self.usage as f64 * 100.0 / self.limit.max(1) as f64
    }
}

/// The process's memory cgroup, found once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cgroup {
    /// The cgroup's directory, and the hierarchy's mount point (where ancestors stop).
    V2 { dir: PathBuf, mount: PathBuf },
    /// The memory controller's directory for the process.
    V1 { dir: PathBuf },
    /// No memory cgroup found.
    None,
}

/// Usage and limit now: with `override_limit`, the process's resident set against it;
/// otherwise the cgroup's, if it has a limit. `None` when there is no limit to be near.
pub(crate) fn read(override_limit: Option<u64>, cgroup: &Cgroup) -> Option<Memory> {
    if let Some(limit) = override_limit {
        return Some(Memory {
            usage: rss_bytes()?,
            limit,
            source: Source::Override,
        });
    }
    match cgroup {
        Cgroup::V2 { dir, mount } => {
            let limit = ancestors(dir, mount)
                .filter_map(|d| parse_limit(&read_text(&d.join("memory.max"))?))
                .min()?;
            let current = parse_number(&read_text(&dir.join("memory.current"))?)?;
            let stat = read_text(&dir.join("memory.stat")).unwrap_or_default();
            let inactive = stat_field(&stat, "inactive_file").unwrap_or(0);
            Some(Memory {
                usage: current.saturating_sub(inactive),
                limit,
                source: Source::CgroupV2,
            })
        }
        Cgroup::V1 { dir } => {
            let stat = read_text(&dir.join("memory.stat")).unwrap_or_default();
            let limit = read_text(&dir.join("memory.limit_in_bytes"))
                .and_then(|t| parse_limit(&t))
                .into_iter()
                .chain(stat_field(&stat, "hierarchical_memory_limit").and_then(unlimited_v1))
                .min()?;
            let usage = parse_number(&read_text(&dir.join("memory.usage_in_bytes"))?)?;
            let inactive = stat_field(&stat, "total_inactive_file").unwrap_or(0);
            Some(Memory {
                usage: usage.saturating_sub(inactive),
                limit,
                source: Source::CgroupV1,
            })
        }
        Cgroup::None => None,
    }
}

/// The process's memory cgroup, from `/proc/self/cgroup` and `/proc/self/mountinfo`.
pub(crate) fn find_cgroup() -> Cgroup {
    match (
        read_text(Path::new("/proc/self/cgroup")),
        read_text(Path::new("/proc/self/mountinfo")),
    ) {
        (Some(cgroup), Some(mountinfo)) => locate(&cgroup, &mountinfo),
        _ => Cgroup::None,
    }
}

/// [`find_cgroup`] over the two files' text. The v1 memory controller wins over v2 when both
/// are mounted (a hybrid host: the limit is enforced by v1 then).
pub(crate) fn locate(proc_cgroup: &str, mountinfo: &str) -> Cgroup {
    let mounts: Vec<Mount<'_>> = mountinfo.lines().filter_map(parse_mount).collect();
    let paths = parse_proc_cgroup(proc_cgroup);
    if let Some(path) = paths.v1_memory
        && let Some(m) = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_opts.split(',').any(|o| o == "memory"))
    {
        return Cgroup::V1 {
            dir: join_under(m, path),
        };
    }
    if let Some(path) = paths.v2
        && let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2")
    {
        return Cgroup::V2 {
            dir: join_under(m, path),
            mount: PathBuf::from(m.mount_point),
        };
    }
    Cgroup::None
}

/// The process's cgroup paths, as `/proc/self/cgroup` lists them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcCgroup<'a> {
    /// The unified hierarchy's path (`0::/path`).
    pub(crate) v2: Option<&'a str>,
    /// The v1 memory controller's path (`N:memory:/path`, or a line naming it among others).
    pub(crate) v1_memory: Option<&'a str>,
}

/// Parses `/proc/self/cgroup`: lines `hierarchy-id:controllers:path`.
pub(crate) fn parse_proc_cgroup(text: &str) -> ProcCgroup<'_> {
    let mut out = ProcCgroup::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            out.v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            out.v1_memory = Some(path);
        }
    }
    out
}

/// The fields of a `/proc/self/mountinfo` line diag needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mount<'a> {
    /// The mounted directory of the filesystem (`/` unless a subtree is mounted).
    pub(crate) root: &'a str,
    pub(crate) mount_point: &'a str,
    pub(crate) fstype: &'a str,
    pub(crate) super_opts: &'a str,
}

/// Parses one mountinfo line: `id parent major:minor root mount-point options [optional...]
/// - fstype source super-options`.
pub(crate) fn parse_mount(line: &str) -> Option<Mount<'_>> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let root = l.nth(3)?;
    let mount_point = l.next()?;
    let mut r = right.split(' ');
    let fstype = r.next()?;
    let super_opts = r.nth(1).unwrap_or("");
    Some(Mount {
        root,
        mount_point,
        fstype,
        super_opts,
    })
}

/// The directory of cgroup `path` under mount `m`: the path less the mount's root (inside a
/// container the mount's root is the container's cgroup), under the mount point. A path
/// outside the mounted subtree is taken as the mount point itself.
fn join_under(m: &Mount<'_>, path: &str) -> PathBuf {
    let rel = if m.root == "/" {
        Some(path)
    } else {
        path.strip_prefix(m.root)
            .filter(|r| r.is_empty() || r.starts_with('/'))
    };
    let mut dir = PathBuf::from(m.mount_point);
    for part in rel.unwrap_or("").split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
    }
    dir
}

/// `dir` and its parents up to and including `mount`.
fn ancestors<'a>(dir: &'a Path, mount: &'a Path) -> impl Iterator<Item = &'a Path> {
    dir.ancestors().take_while(move |d| d.starts_with(mount))
}

/// A limit file's value: `None` for `max` (v2) or v1's unlimited.
pub(crate) fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    parse_number(t).and_then(unlimited_v1)
}

/// `v`, unless it is so large it means "no limit" (v1 writes `i64::MAX` rounded down to a
/// page; no machine has 2^62 bytes).
fn unlimited_v1(v: u64) -> Option<u64> {
    (v < 1 << 62).then_some(v)
}

/// A file holding one number.
pub(crate) fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The value of `key` in a `memory.stat` (`key value` lines).
pub(crate) fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| parse_number(v)).flatten()
    })
}

/// The process's resident set in bytes (`/proc/self/statm`'s second field, in pages).
pub(crate) fn rss_bytes() -> Option<u64> {
    let statm = read_text(Path::new("/proc/self/statm"))?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096)))
}

fn read_text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2_CGROUP: &str = "0::/kubepods.slice/pod1/app.scope\n";
    const V2_MOUNTINFO: &str = "\
24 1 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    /// This machine's kind: v1, the memory controller mounted on its own.
    const V1_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/63db33ac
3:cpuset:/
1:cpu,cpuacct:/
0::/
";
    const V1_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn proc_cgroup_lines() {
        let p = parse_proc_cgroup(V2_CGROUP);
        assert_eq!(p.v2, Some("/kubepods.slice/pod1/app.scope"));
        assert_eq!(p.v1_memory, None);
        let p = parse_proc_cgroup(V1_CGROUP);
        assert_eq!(p.v1_memory, Some("/process_api/63db33ac"));
        assert_eq!(p.v2, Some("/"));
        // The memory controller co-mounted with others, and lines that are not cgroups.
        let p = parse_proc_cgroup("5:cpu,memory:/a/b\ngarbage\n\n");
        assert_eq!(p.v1_memory, Some("/a/b"));
    }

    #[test]
    fn the_cgroup_directory_under_its_mount() {
        assert_eq!(
            locate(V2_CGROUP, V2_MOUNTINFO),
            Cgroup::V2 {
                dir: "/sys/fs/cgroup/kubepods.slice/pod1/app.scope".into(),
                mount: "/sys/fs/cgroup".into()
            }
        );
        // v1 wins where the memory controller is mounted as v1.
        assert_eq!(
            locate(V1_CGROUP, V1_MOUNTINFO),
            Cgroup::V1 {
                dir: "/sys/fs/cgroup/memory/process_api/63db33ac".into()
            }
        );
        // Inside a container: the mount's root is the container's cgroup.
        let inside = "40 30 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        assert_eq!(
            locate("4:memory:/docker/abc\n", inside),
            Cgroup::V1 {
                dir: "/sys/fs/cgroup/memory".into()
            }
        );
        // A cgroup namespace: the path is `/`.
        assert_eq!(
            locate("0::/\n", V2_MOUNTINFO),
            Cgroup::V2 {
                dir: "/sys/fs/cgroup".into(),
                mount: "/sys/fs/cgroup".into()
            }
        );
        assert_eq!(locate("0::/\n", ""), Cgroup::None);
        assert_eq!(locate("", V1_MOUNTINFO), Cgroup::None);
    }

    #[test]
    fn mountinfo_with_optional_fields() {
        let m = parse_mount(
            "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 master:1 - cgroup2 cgroup2 rw",
        )
        .unwrap();
        assert_eq!(
            (m.root, m.mount_point, m.fstype, m.super_opts),
            ("/", "/sys/fs/cgroup", "cgroup2", "rw")
        );
        assert_eq!(parse_mount("no separator here"), None);
    }

    #[test]
    fn limits_max_and_unlimited() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("536870912\n"), Some(512 << 20));
        // v1's "no limit" on x86-64 (4 KiB pages) and on 64 KiB-page machines.
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("9223372036854710272"), None);
        assert_eq!(parse_limit("-1"), None);
        assert_eq!(parse_limit(""), None);
        assert_eq!(parse_number(" 42\n"), Some(42));
    }

    #[test]
    fn memory_stat_fields() {
        let v2 = "anon 1000\nfile 5000\nactive_file 1000\ninactive_file 4000\n";
        assert_eq!(stat_field(v2, "inactive_file"), Some(4000));
        assert_eq!(stat_field(v2, "file"), Some(5000));
        let v1 = "cache 8192\ninactive_file 10\nhierarchical_memory_limit 9223372036854771712\n\
                  total_inactive_file 4096\n";
        assert_eq!(stat_field(v1, "total_inactive_file"), Some(4096));
        assert_eq!(
            stat_field(v1, "hierarchical_memory_limit").and_then(unlimited_v1),
            None
        );
        assert_eq!(stat_field(v1, "missing"), None);
    }

    /// Both versions read from a directory laid out as the kernel does, working set less the
    /// inactive page cache, the smallest ancestor limit (v2).
    #[test]
    fn usage_and_limit_from_files() {
        let root = std::env::temp_dir().join(format!("diag-cgroup-{}", std::process::id()));
        let dir = root.join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        let w = |p: &Path, f: &str, t: &str| std::fs::write(p.join(f), t).unwrap();
        w(&dir, "memory.max", "max\n");
        w(&root.join("a"), "memory.max", "1000000\n");
        w(&root, "memory.max", "2000000\n");
        w(&dir, "memory.current", "900000\n");
        w(&dir, "memory.stat", "anon 1\ninactive_file 100000\n");
        let m = read(
            None,
            &Cgroup::V2 {
                dir: dir.clone(),
                mount: root.clone(),
            },
        )
        .unwrap();
        assert_eq!(
            (m.usage, m.limit, m.source),
            (800_000, 1_000_000, Source::CgroupV2)
        );
        assert_eq!(m.percent(), 80.0);
        w(&root.join("a"), "memory.max", "max\n");
        w(&root, "memory.max", "max\n");
        let none = read(
            None,
            &Cgroup::V2 {
                dir: dir.clone(),
                mount: root.clone(),
            },
        );
        assert_eq!(none, None, "unlimited everywhere: nothing to be near");

        w(&dir, "memory.limit_in_bytes", "9223372036854771712\n");
        w(&dir, "memory.usage_in_bytes", "600000\n");
        w(
            &dir,
            "memory.stat",
            "hierarchical_memory_limit 700000\ntotal_inactive_file 50000\n",
        );
        let m = read(None, &Cgroup::V1 { dir: dir.clone() }).unwrap();
        assert_eq!(
            (m.usage, m.limit, m.source),
            (550_000, 700_000, Source::CgroupV1)
        );

        let o = read(Some(1 << 40), &Cgroup::V1 { dir }).unwrap();
        assert_eq!((o.limit, o.source), (1 << 40, Source::Override));
        assert!(o.usage > 0, "{o:?}");
        assert_eq!(read(None, &Cgroup::None), None);
        std::fs::remove_dir_all(root).ok();
    }
}
