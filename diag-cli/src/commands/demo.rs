//! `diag demo`: the main job end to end on a built-in leaky service. Starts the `leaky`
//! example, drives traffic, takes two heap snapshots, prints the diff that names the leak,
//! writes the differential flamegraph, then reads the service's heap history over a stretch
//! of leaking traffic and shows the leak's trend, writes the HTML report, and says where the
//! files are.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use diag_core::profile::{self, DiffOptions, FlameOptions};

use super::diff::{DEFAULT_TOP, write_table};
use super::snapshot::{self, take};
use crate::input::read_profile;
use crate::report;
use crate::units;

/// What `diag demo` is asked to do.
pub(crate) struct Options {
    /// Where the snapshots and the SVG go.
    pub(crate) out: PathBuf,
    /// Leaking requests between the two snapshots.
    pub(crate) requests: usize,
    /// KiB retained by each leaking request.
    pub(crate) kb: usize,
}

/// Kills the demo service when the demo ends, however it ends.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The function of the `leaky` example that holds the memory (the end of its path).
const LEAK_FUNCTION: &str = "leaky::remember_request";

/// The `leaky` example binary: built with cargo when `diag` runs under cargo (`cargo run`, so
/// a changed tree is never demonstrated with an old build), else the one beside `diag`, else
/// built with cargo from this workspace.
fn leaky_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the diag binary")?;
    let dir = exe.parent().context("the diag binary has no directory")?;
    let candidate = dir.join("leaky");
    if candidate.is_file() && std::env::var_os("CARGO").is_none() {
        return Ok(candidate);
    }
    let release = dir.ends_with("release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("diag demo: building the leaky example service...");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "-p", "diag-examples", "--bin", "leaky"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().with_context(|| {
        format!("running `{cargo} build -p diag-examples --bin leaky` (run the demo from the diag workspace)")
    })?;
    if !status.success() || !candidate.is_file() {
        bail!(
            "could not build the leaky example; from the diag workspace run `cargo build{} -p diag-examples --bin leaky`",
            if release { " --release" } else { "" }
        );
    }
    Ok(candidate)
}

/// Starts the service on free ports; returns it with its app and diag base URLs.
fn start(bin: &Path) -> Result<(Service, String, String)> {
    let mut child = Command::new(bin)
        .arg("127.0.0.1:0")
        .env("DIAG_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout from the service")?;
    let service = Service(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut app, mut diag) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.is_none() || diag.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .context("the leaky service did not report its addresses within 30 s")?;
        if let Some(a) = line.strip_prefix("app listening on ") {
            app = Some(a.trim().to_owned());
        } else if let Some(d) = line.strip_prefix("diag listening on ") {
            diag = Some(d.trim().to_owned());
        }
    }
    Ok((service, app.unwrap_or_default(), diag.unwrap_or_default()))
}

fn drive(agent: &ureq::Agent, url: &str, n: usize, what: &str) -> Result<()> {
    for i in 0..n {
        let mut r = agent
            .get(url)
            .call()
            .with_context(|| format!("request {} of {n} to {url}", i + 1))?;
        if r.status() != 200 {
            bail!("{url} answered {}", r.status());
        }
        r.body_mut().read_to_vec()?;
        if !what.is_empty() && ((i + 1) % 100 == 0 || i + 1 == n) {
            eprint!("\r  {what}: {}/{n}", i + 1);
        }
    }
    if !what.is_empty() {
        eprintln!();
    }
    Ok(())
}

/// Rounds of traffic in the trend step (one history point each when the service keeps up),
/// and the time between two points.
const TREND_POINTS: u32 = 10;
const TREND_INTERVAL: Duration = Duration::from_millis(250);

/// Step 5: a leak keeps growing. Turns the service's heap history to a point every 250 ms,
/// drives leaking and normal traffic across ten of them (growth needs five rising steps to be
/// significant; ten rounds leave room for a few the sampler missed), then reads the history
/// back as `diag trend URL --history` does and checks the leak is called growing and ranked
/// first.
/// Returns the directory the points were saved in.
fn trend_step(agent: &ureq::Agent, app: &str, diag: &str, args: &Options) -> Result<PathBuf> {
    println!(
        "5. diag trend {diag} --history: does it keep growing? (heap history every {} ms, \
         {TREND_POINTS} rounds of leaking traffic)",
        TREND_INTERVAL.as_millis()
    );
    // Cleared first (interval 0), so the history starts now, with a point at once.
    for query in [
        "interval_ms=0".to_owned(),
        format!("interval_ms={}&points=60", TREND_INTERVAL.as_millis()),
    ] {
        let url = format!("{diag}/debug/heap/history?{query}");
        let mut r = agent
            .post(&url)
            .send_empty()
            .with_context(|| format!("POST {url}"))?;
        if r.status() != 200 {
            bail!("POST {url} answered {}", r.status());
        }
        r.body_mut().read_to_vec()?;
    }
    let start = Instant::now();
    let per_round = (args.requests / TREND_POINTS as usize).max(20);
    for round in 1..=TREND_POINTS {
        drive(agent, &format!("{app}/leak?kb={}", args.kb), per_round, "")?;
        drive(agent, &format!("{app}/churn"), per_round, "")?;
        if let Some(wait) = (TREND_INTERVAL * round).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let remote = crate::remote::Remote::new(diag, None, Duration::from_secs(60))?;
    let history = super::trend::read_history(&remote)?;
    // The demo's own directory: a previous run's points would mix into `diag trend` of it.
    let dir = args.out.join("history");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = super::trend::fetch_history(&remote, &history, None, &dir)?;
    let profiles = files
        .iter()
        .map(|f| read_profile(f))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&profile::Profile> = profiles.iter().collect();
    let trend = profile::trend(&refs, &profile::TrendOptions::default())?;
    println!();
    super::trend::write_table(&mut std::io::stdout().lock(), &trend, 5, false)?;
    println!();
    let Some(top) = trend.sites.first() else {
        bail!("the trend shows no site: the demo did not see the leak grow");
    };
    if !top.function.ends_with(LEAK_FUNCTION) || top.verdict != profile::Verdict::Growing {
        bail!(
            "the trend ranks `{}` ({}) first, not the leaking function `{LEAK_FUNCTION}` \
             (growing)",
            top.function,
            top.verdict.as_str()
        );
    }
    println!(
        "   the leak keeps growing: {} at {} over {} points (p {})",
        top.function,
        trend_rate(top.slope_bytes),
        top.bytes.len(),
        crate::stats::p_value(top.p_growing)
    );
    Ok(dir)
}

/// Seconds of CPU profile the demo takes while it drives the leaking traffic.
const REPORT_CPU_SECONDS: u64 = 2;

/// What the demo's report needs besides the snapshots: a CPU profile taken while the leaking
/// traffic runs, and a scrape of /metrics before it.
struct ReportProbe {
    remote: crate::remote::Remote,
    cpu: std::thread::JoinHandle<Result<crate::remote::Reply>>,
    metrics: Option<crate::scrape::Scrape>,
    start: Instant,
}

impl ReportProbe {
    fn start(diag: &str) -> Result<Self> {
        let remote = crate::remote::Remote::new(diag, None, Duration::from_secs(60))?;
        let cpu_remote = crate::remote::Remote::new(diag, None, Duration::from_secs(60))?;
        let path = format!("/debug/pprof/profile?seconds={REPORT_CPU_SECONDS}");
        let cpu = std::thread::spawn(move || cpu_remote.get_profile(&path));
        let metrics = report::fetch_metrics(&remote).ok();
        Ok(Self {
            remote,
            cpu,
            metrics,
            start: Instant::now(),
        })
    }

    /// Writes `report.html` into `out` from the two snapshots, the trend of the history
    /// points in `history`, the CPU profile, /debug/tasks and /metrics; returns its path.
    fn finish(
        self,
        out: &Path,
        (a, before): (&Path, &profile::Profile),
        (b, after): (&Path, &profile::Profile),
        history: &Path,
    ) -> Result<PathBuf> {
        let opts = report::ReportOptions::default();
        let mut r = report::Report {
            source: format!("diag demo: the leaky example at {}", self.remote.base()),
            ..Default::default()
        };
        r.add_diff(
            (&a.display().to_string(), before),
            (&b.display().to_string(), after),
            &opts,
        )?;
        let mut points: Vec<PathBuf> = std::fs::read_dir(history)
            .with_context(|| format!("reading {}", history.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "gz"))
            .collect();
        points.sort();
        let profiles = points
            .iter()
            .map(|p| read_profile(&p.display().to_string()))
            .collect::<Result<Vec<_>>>()?;
        if profiles.len() >= profile::MIN_TREND_SNAPSHOTS {
            r.add_trend(&profiles.iter().collect::<Vec<_>>(), &opts)?;
        }
        let cpu = self
            .cpu
            .join()
            .map_err(|_| anyhow::anyhow!("the CPU profile thread panicked"))?
            .and_then(|reply| crate::input::decode(&reply.body, "the CPU profile"));
        match cpu {
            Ok(p) => r.add_cpu(
                &format!(
                    "{}/debug/pprof/profile?seconds={REPORT_CPU_SECONDS}",
                    self.remote.base()
                ),
                &p,
                &opts,
            )?,
            Err(e) => r.notes.push(format!("no CPU profile: {e:#}")),
        }
        match report::fetch_tasks(&self.remote) {
            Ok(v) => r.tasks = Some(v),
            Err(e) => r.notes.push(format!("no runtime health: {e:#}")),
        }
        if let (Some(m0), Ok(m1)) = (&self.metrics, report::fetch_metrics(&self.remote)) {
            let secs = self.start.elapsed().as_secs_f64();
            r.routes = Some(crate::scrape::diff(self.remote.base(), m0, &m1, secs));
        }
        let page = out.join("report.html");
        super::report::write(&r, &page)?;
        Ok(page)
    }
}

/// Bytes per second as `+1.2 MiB/s`.
fn trend_rate(bytes_per_sec: f64) -> String {
    units::rate(bytes_per_sec.round() as i64, "bytes", "s")
}

/// Runs `diag demo`.
pub(crate) fn run(args: Options) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let bin = leaky_binary()?;
    let (_service, app, diag) = start(&bin)?;
    println!("1. started the leaky example: app {app}, diag {diag}");
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    drive(&agent, &format!("{app}/churn"), 300, "warm-up traffic")?;

    let snap = |name: &str| -> Result<PathBuf> {
        let s = take(&snapshot::Options {
            url: diag.clone(),
            output: Some(args.out.join(name)),
            allocs: false,
            seconds: 0,
            token: None,
            timeout: Duration::from_secs(60),
        })?;
        println!(
            "   snapshot {}: {} in use (estimated)",
            s.path.display(),
            units::bytes(s.inuse_bytes)
        );
        Ok(s.path)
    };
    let a = snap("before.pb.gz")?;
    let probe = ReportProbe::start(&diag)?;
    println!(
        "2. driving {} leaking requests ({} KiB each) and normal churn",
        args.requests, args.kb
    );
    drive(
        &agent,
        &format!("{app}/leak?kb={}", args.kb),
        args.requests,
        "/leak",
    )?;
    drive(&agent, &format!("{app}/churn"), args.requests * 3, "/churn")?;
    let b = snap("after.pb.gz")?;

    let (before, after) = (
        read_profile(&a.display().to_string())?,
        read_profile(&b.display().to_string())?,
    );
    let mut diff = profile::diff(&before, &after, &DiffOptions::default())?;
    let total_sites = diff.sites.len();
    diff.sites.truncate(DEFAULT_TOP);
    println!("3. diag diff {} {}", a.display(), b.display());
    println!();
    write_table(&mut std::io::stdout().lock(), &diff, total_sites, false)?;
    println!();

    let svg = args.out.join("growth.svg");
    let mut flame = FlameOptions::default();
    flame.title = Some("Heap growth during the demo (inuse_space)".into());
    flame.highlight = diff
        .sites
        .first()
        .filter(|s| s.delta_bytes > 0)
        .map(|s| s.function.clone());
    let mut bytes = Vec::new();
    profile::diff_flamegraph(&before, &after, &flame, &mut bytes)
        .context("drawing the differential flamegraph")?;
    std::fs::write(&svg, bytes).with_context(|| format!("writing {}", svg.display()))?;

    let truth = (args.requests * args.kb * 1024) as i64;
    let Some(top) = diff.sites.first().filter(|s| s.delta_bytes > 0) else {
        bail!("the diff shows no growth: the demo did not find the leak");
    };
    if !top.function.ends_with(LEAK_FUNCTION) {
        bail!(
            "the diff ranks `{}` first, not the leaking function `{LEAK_FUNCTION}`: the demo \
             did not find the leak",
            top.function
        );
    }
    println!(
        "4. the leak: {} grew by {} (the demo leaked {} there: estimate off by {})",
        top.function,
        units::bytes(top.delta_bytes),
        units::bytes(truth),
        units::signed_percent((top.delta_bytes - truth) as f64 * 100.0 / truth as f64)
    );
    println!(
        "   files: {} {} {}",
        a.display(),
        b.display(),
        svg.display()
    );

    let history = trend_step(&agent, &app, &diag, &args)?;
    println!("   files: {}/heap-*.pb.gz", history.display());
    let page = probe.finish(&args.out, (&a, &before), (&b, &after), &history)?;
    println!(
        "6. diag report: one page for a ticket (verdict, growth table, flamegraphs, trend, \
         runtime health): {}",
        page.display()
    );
    println!(
        "   next: `diag top {}`, `diag list remember_request {}`, `diag diff {} {} --json`, \
         `diag trend {}/heap-*.pb.gz`, or `go tool pprof -top {}`",
        b.display(),
        b.display(),
        a.display(),
        b.display(),
        history.display(),
        b.display()
    );
    Ok(ExitCode::SUCCESS)
}
