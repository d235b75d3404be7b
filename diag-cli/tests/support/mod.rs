//! Shared harness for the CLI tests: fixture files (written when missing, then committed),
//! golden files, running the built `diag` binary, one HTTP client ([`Http`]), and waiting on
//! conditions ([`wait_until`]).

#![allow(dead_code, unreachable_pub, unused_imports)]

// The same wait as diag-core's tests use (one file, included by path).
#[path = "../../../diag-core/tests/support/wait.rs"]
mod wait;

pub mod prometheus;

pub use wait::{poll_until, wait_until, when};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::Duration;

use diag_core::profile::{Frame, Profile, Sample, ValueType, pprof_codec};

/// `diag-cli/tests/<rel>`.
pub fn tests_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}

/// The path of fixture `name`, creating all fixtures first if missing.
pub fn fixture(name: &str) -> PathBuf {
    static ONCE: Once = Once::new();
    ONCE.call_once(write_fixtures);
    tests_dir("fixtures").join(name)
}

/// A scratch directory for one test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diag-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `diag args...` in the tests directory (so file names in messages are short).
pub fn diag(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diag"))
        .args(args)
        .current_dir(tests_dir("fixtures"))
        .stdin(Stdio::null())
        .output()
        .expect("running diag")
}

/// stdout of a run that must succeed.
pub fn ok(args: &[&str]) -> String {
    let out = diag(args);
    assert!(
        out.status.success(),
        "diag {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// stderr of a run that must fail with exit code 2 and a `diag: error:` message.
pub fn fails(args: &[&str]) -> String {
    let out = diag(args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "diag {args:?}: {stderr}");
    // Progress lines may come first; the error is the last line.
    let last = stderr.trim_end().lines().last().unwrap_or("");
    assert!(last.starts_with("diag: error: "), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Compares `actual` with golden file `name`, writing it when missing (or with
/// `UPDATE_GOLDEN=1`).
pub fn golden(name: &str, actual: &str) {
    let path = tests_dir("golden").join(name);
    if !path.exists() || std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        actual,
        expected,
        "output differs from {} (rerun with UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

fn frame(function: &str, file: Option<&str>, line: u32) -> Frame {
    Frame {
        function: function.to_owned(),
        file: file.map(str::to_owned),
        line,
        address: 0,
    }
}

const RAW_VEC: &str = "/rustc/library/alloc/src/raw_vec/mod.rs";

fn vec_alloc() -> Vec<Frame> {
    vec![
        frame("__rustc::__rust_alloc", None, 0),
        frame(
            "alloc::raw_vec::RawVecInner<A>::with_capacity_in",
            Some(RAW_VEC),
            476,
        ),
        frame(
            "alloc::vec::Vec<T>::with_capacity",
            Some("/rustc/library/alloc/src/vec/mod.rs"),
            481,
        ),
    ]
}

fn user(function: &str, file: &str, line: u32) -> Frame {
    frame(function, Some(file), line)
}

fn outer() -> Vec<Frame> {
    vec![
        user("myapp::main::{{closure}}", "src/main.rs", 30),
        frame("tokio::runtime::task::raw::poll", None, 0),
        frame(
            "std::thread::Builder::spawn_unchecked_::{{closure}}",
            None,
            0,
        ),
    ]
}

fn stack(inner: Vec<Frame>, user_frames: Vec<Frame>) -> Vec<Frame> {
    inner
        .into_iter()
        .chain(user_frames)
        .chain(outer())
        .collect()
}

fn heap(samples: Vec<(Vec<Frame>, i64, i64)>) -> Profile {
    Profile {
        sample_types: vec![
            ValueType::new("alloc_objects", "count"),
            ValueType::new("alloc_space", "bytes"),
            ValueType::new("inuse_objects", "count"),
            ValueType::new("inuse_space", "bytes"),
        ],
        samples: samples
            .into_iter()
            .map(|(stack, bytes, objects)| Sample {
                stack,
                values: vec![objects * 3, bytes * 3, objects, bytes],
                labels: Vec::new(),
            })
            .collect(),
        period_type: Some(ValueType::new("space", "bytes")),
        period: 512 * 1024,
        time_nanos: 1_700_000_000_000_000_000,
        default_sample_type: Some("inuse_space".to_owned()),
        ..Profile::default()
    }
}

fn cache_insert() -> Vec<Frame> {
    vec![
        user("myapp::cache::Cache::insert", "src/cache.rs", 42),
        user(
            "myapp::handlers::upload::{{closure}}",
            "src/handlers/upload.rs",
            88,
        ),
    ]
}

fn session_clone() -> Vec<Frame> {
    vec![
        user(
            "<myapp::session::Session as core::clone::Clone>::clone",
            "src/session.rs",
            17,
        ),
        user(
            "myapp::handlers::login::{{closure}}",
            "src/handlers/login.rs",
            21,
        ),
    ]
}

fn body_buffer() -> Vec<Frame> {
    vec![user(
        "myapp::handlers::upload::{{closure}}",
        "src/handlers/upload.rs",
        61,
    )]
}

fn config() -> Vec<Frame> {
    vec![user("myapp::config::load", "src/config.rs", 9)]
}

/// The fixtures: two heap snapshots of a leaking service, a CPU profile, and broken inputs.
fn write_fixtures() {
    let dir = tests_dir("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let before = heap(vec![
        (stack(vec_alloc(), cache_insert()), 2 << 20, 32),
        (stack(vec_alloc(), body_buffer()), 6 << 20, 12),
        (stack(vec_alloc(), config()), 64 << 10, 10),
    ]);
    let mut after_cache = cache_insert();
    after_cache.insert(1, user("myapp::cache::Cache::refresh", "src/cache.rs", 70));
    let after = heap(vec![
        (stack(vec_alloc(), cache_insert()), 2 << 20, 32),
        (stack(vec_alloc(), after_cache), 13 << 20, 208),
        (stack(vec_alloc(), session_clone()), 1536 << 10, 3072),
        (stack(vec_alloc(), body_buffer()), 5 << 20, 10),
        (stack(vec_alloc(), config()), 64 << 10, 10),
    ]);
    let cpu = Profile {
        sample_types: vec![
            ValueType::new("samples", "count"),
            ValueType::new("cpu", "nanoseconds"),
        ],
        samples: [
            (
                vec!["myapp::json::parse", "myapp::handlers::upload::{{closure}}"],
                61,
            ),
            (vec!["sha2::sha256::compress256", "myapp::auth::verify"], 25),
            (vec!["myapp::auth::verify"], 4),
            (
                vec![
                    "__memcpy_avx_unaligned",
                    "myapp::json::parse",
                    "myapp::handlers::upload::{{closure}}",
                ],
                10,
            ),
        ]
        .into_iter()
        .map(|(names, n)| Sample {
            stack: names.into_iter().map(|f| frame(f, None, 0)).collect(),
            values: vec![n, n * 10_000_000],
            labels: Vec::new(),
        })
        .collect(),
        period_type: Some(ValueType::new("cpu", "nanoseconds")),
        period: 10_000_000,
        duration_nanos: 1_000_000_000,
        ..Profile::default()
    };
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(path, bytes).unwrap();
        }
    };
    let after_gz = pprof_codec::encode_gzip(&after);
    write("before.pb.gz", &pprof_codec::encode_gzip(&before));
    write("after.pb.gz", &after_gz);
    write("cpu.pb", &pprof_codec::encode(&cpu));
    write("truncated.pb.gz", &after_gz[..after_gz.len() / 2]);
    let mut corrupt = after_gz.clone();
    for b in &mut corrupt[12..40] {
        *b ^= 0x5a;
    }
    write("corrupt.pb.gz", &corrupt);
    write("empty.pb.gz", b"");
    write("not-a-profile.txt", b"this is a README, not a profile\n");
}

/// The tests' HTTP client: one timeout for the whole request, any status an answer (not an
/// error), bodies up to 1 GiB.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
}

/// What a server answered: the status and the body's bytes.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

impl Http {
    /// A client whose requests time out after 10 s.
    pub fn new() -> Self {
        Self::with_timeout(Duration::from_secs(10))
    }

    /// A client whose requests time out after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self { agent }
    }

    /// The underlying agent, for requests the helpers below do not make (query parameters).
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// `GET url`, whatever the status; an error if no answer came (connection, timeout).
    pub fn try_get(&self, url: &str) -> Result<Answer, String> {
        let r = self.agent.get(url).call();
        Self::answer(url, r)
    }

    /// `GET url` answered 200: the answer; else an error naming the URL and the status.
    pub fn get(&self, url: &str) -> Result<Answer, String> {
        let answer = self.try_get(url)?;
        if answer.status != 200 {
            return Err(format!("{url}: HTTP {}: {}", answer.status, answer.text()));
        }
        Ok(answer)
    }

    /// `GET url`, which must answer 200.
    #[track_caller]
    pub fn ok(&self, url: &str) -> Answer {
        self.get(url).unwrap_or_else(|e| panic!("GET {e}"))
    }

    /// The status `GET url` answers (any status).
    #[track_caller]
    pub fn status(&self, url: &str) -> u16 {
        self.try_get(url)
            .unwrap_or_else(|e| panic!("GET {e}"))
            .status
    }

    /// `POST url` with an empty body, whatever the status; fails if no answer came.
    #[track_caller]
    pub fn post(&self, url: &str) -> Answer {
        let r = self.agent.post(url).send_empty();
        Self::answer(url, r).unwrap_or_else(|e| panic!("POST {e}"))
    }

    fn answer(
        url: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, String> {
        let mut r = r.map_err(|e| format!("{url}: {e}"))?;
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| format!("{url}: reading the body: {e}"))?;
        Ok(Answer { status, body })
    }
}

/// A client with the default timeout ([`Http::new`])'s agent.
pub fn agent() -> ureq::Agent {
    Http::new().agent().clone()
}

/// The status `GET url` answers (any status, not an error).
pub fn status(url: &str) -> u16 {
    Http::new().status(url)
}

/// Whether a site or top-list entry of `diag`'s JSON is the leaky example's leaking function.
pub fn is_the_leak(entry: &serde_json::Value) -> bool {
    entry["function"]
        .as_str()
        .is_some_and(|f| f.ends_with("leaky::remember_request"))
}

/// Whether a CPU profile of this process samples now: diag's sampler catches `SIGPROF` while
/// it samples, and only then (read from `SigCgt` in `/proc/self/status`).
pub fn cpu_profile_sampling() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .map(|mask| u64::from_str_radix(mask.trim(), 16).unwrap())
        .expect("SigCgt in /proc/self/status");
    caught & (1 << (libc::SIGPROF - 1)) != 0
}

/// A real peer program the tests talk to (`go`, `prometheus`, `wrk`), found on `PATH` (or at
/// the path in the environment variable `override_var`, if set). When it is missing the test
/// fails with the command that installs it, unless `DIAG_SKIP_PEERS=1`: then it returns None
/// and says what it skipped on the terminal (written past libtest's capture, so a passing
/// `cargo test` shows it).
pub fn peer(name: &str, debian_package: &str, override_var: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = override_var.and_then(std::env::var_os) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{} points at {}, which is not a file",
            override_var.unwrap(),
            p.display()
        );
        return Some(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_some() {
        return found;
    }
    if std::env::var("DIAG_SKIP_PEERS").is_ok_and(|v| v == "1") {
        use std::io::Write;
        let test = std::thread::current().name().unwrap_or("?").to_owned();
        // libtest captures print!/eprint!, not writes to the stderr handle itself.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED (DIAG_SKIP_PEERS=1) in {test}: `{name}` is not on PATH; \
             apt-get install {debian_package} runs it ***"
        );
        return None;
    }
    panic!(
        "`{name}` is not on PATH: this test talks to the real {name}. Install it with \
         `apt-get install {debian_package}` (as .ci/run does), or set DIAG_SKIP_PEERS=1 to skip \
         the checks that need it"
    );
}

/// Heap profiles a second apart of one-frame sites, site `name` holding `values[k]` bytes in
/// profile `k`; written under `dir`, their paths returned.
pub fn write_series(dir: &std::path::Path, sites: &[(&str, &[i64])]) -> Vec<String> {
    use diag_core::profile::{Frame, Profile, Sample, ValueType, pprof_codec};
    let n = sites[0].1.len();
    (0..n)
        .map(|k| {
            let p = Profile {
                sample_types: vec![ValueType::new("inuse_space", "bytes")],
                samples: sites
                    .iter()
                    .map(|(name, values)| Sample {
                        stack: vec![Frame::named(*name)],
                        values: vec![values[k]],
                        labels: Vec::new(),
                    })
                    .collect(),
                time_nanos: 1_000_000_000 * (k as i64 + 1),
                ..Profile::default()
            };
            let file = dir.join(format!("heap-{k}.pb"));
            std::fs::write(&file, pprof_codec::encode(&p)).unwrap();
            file.to_str().unwrap().to_owned()
        })
        .collect()
}

/// `diag diff A B --by route --json` over `dir`'s `a.pb.gz` and `b.pb.gz`: `route` is the
/// first group, its growth within 25 % of `kept` bytes, its top site a function ending in
/// `site`.
pub fn assert_diff_by_route_ranks_first(dir: &Path, route: &str, kept: u64, site: &str) {
    let (a, b) = (dir.join("a.pb.gz"), dir.join("b.pb.gz"));
    let json = ok(&[
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--by",
        "route",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let first = &v["groups"][0];
    assert_eq!(first["value"], route, "{json}");
    let est = first["delta_bytes"].as_i64().unwrap() as f64;
    let truth = kept as f64;
    assert!(
        (est - truth).abs() <= 0.25 * truth,
        "{route}: estimate {est} vs kept {truth}"
    );
    assert!(
        first["sites"][0]["function"]
            .as_str()
            .unwrap()
            .ends_with(site),
        "{first}"
    );
}

/// The leaky example in process (256 KiB sampling, diag's layer on its routes), with its heap
/// history set to a point every `interval_ms`, keeping `points`.
pub fn leaky_with_history(interval_ms: u64, points: usize) -> diag_examples::InProcess {
    let service = diag_examples::InProcess::start(
        diag_core::Diag::builder().heap_sample_bytes(256 * 1024),
        diag_examples::leaky::app().layer(diag_core::layer()),
    );
    let set = Http::new().post(&format!(
        "{}/debug/heap/history?interval_ms={interval_ms}&points={points}",
        service.diag_url
    ));
    assert_eq!(set.status, 200, "{}", set.text());
    service
}

/// `diag report` (its output `out`) succeeded and its page `page` has the routes section
/// naming `route`.
pub fn assert_report_names_route(out: &Output, page: &Path, route: &str) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains("id=\"routes\""), "no routes section");
    assert!(html.contains(route), "the report does not name {route}");
}

/// An estimate within 25 % of the truth, with both in the message otherwise.
pub fn assert_within_25_percent(what: &str, estimate: f64, truth: f64) {
    let err = (estimate - truth).abs() / truth;
    assert!(
        err < 0.25,
        "{what}: {estimate} vs {truth}: {:.1}% off",
        err * 100.0
    );
}
