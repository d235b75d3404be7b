//! [`Builder`]: every setting of diag in code (defaults in `defaults`, `DEFAULT_*`), and
//! `start()`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::defaults::{
    DEFAULT_ADDR, DEFAULT_BLOCKING_THRESHOLD, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SNAPSHOT_MIN_INTERVAL, DEFAULT_TASK_SAMPLE,
};
use crate::env;
use crate::error::{Error, ErrorKind, Result};
use crate::handle::Diag;
use crate::heap;
use crate::http::{ServerConfig, start_server};

mod capture;

impl Diag {
    /// A [`Builder`] with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Configures and starts diag in code. Setters take and return `self`.
#[derive(Debug, Clone)]
pub struct Builder {
    addr: String,
    heap_sample_bytes: u64,
    heap_unwinder: heap::Unwinder,
    token: Option<String>,
    max_tracked_blocks: usize,
    listen: bool,
    snapshot_min_interval: Duration,
    max_profile_seconds: u64,
    blocking_threshold: Duration,
    task_sample: u32,
    request_timeout: Duration,
    max_response_bytes: u64,
    heap_history_interval: Duration,
    heap_history_points: usize,
    leak_alpha: f64,
    leak_min_rate: f64,
    leak_window: Duration,
    app_crates: Vec<String>,
    /// `None`: the symbolizer's own default (or its environment variable).
    symbol_cache_bytes: Option<usize>,
    symbol_idle: Option<Duration>,
    symbolize: bool,
    capture: capture::CaptureConfig,
    #[cfg(feature = "console")]
    console: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR.to_owned(),
            heap_sample_bytes: heap::DEFAULT_SAMPLE_BYTES,
            heap_unwinder: heap::Unwinder::Cached,
            token: None,
            max_tracked_blocks: heap::DEFAULT_MAX_TRACKED_BLOCKS,
            listen: true,
            snapshot_min_interval: DEFAULT_SNAPSHOT_MIN_INTERVAL,
            max_profile_seconds: crate::defaults::DEFAULT_MAX_SECONDS,
            blocking_threshold: DEFAULT_BLOCKING_THRESHOLD,
            task_sample: DEFAULT_TASK_SAMPLE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            heap_history_interval: heap::DEFAULT_HISTORY_INTERVAL,
            heap_history_points: heap::DEFAULT_HISTORY_POINTS,
            leak_alpha: heap::DEFAULT_LEAK_ALPHA,
            leak_min_rate: heap::DEFAULT_LEAK_MIN_RATE,
            leak_window: heap::DEFAULT_LEAK_WINDOW,
            app_crates: Vec::new(),
            symbol_cache_bytes: None,
            symbol_idle: None,
            symbolize: true,
            capture: capture::CaptureConfig::default(),
            #[cfg(feature = "console")]
            console: true,
        }
    }
}

fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::new(
            ErrorKind::Config,
            format!("{name} is not valid UTF-8"),
        )),
    }
}

fn env_number(name: &str) -> Result<Option<u64>> {
    env_var(name)?
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                Error::new(
                    ErrorKind::Config,
                    format!("{name}={v:?} must be a non-negative integer"),
                )
            })
        })
        .transpose()
}

fn env_float(name: &str, what: &str, ok: impl Fn(f64) -> bool) -> Result<Option<f64>> {
    env_var(name)?
        .map(|v| {
            v.parse::<f64>().ok().filter(|x| ok(*x)).ok_or_else(|| {
                Error::new(ErrorKind::Config, format!("{name}={v:?} must be {what}"))
            })
        })
        .transpose()
}

/// `DIAG_LEAK_WINDOW`: seconds, or a number with `s`, `m`, `h` or `d`.
fn env_span(name: &str) -> Result<Option<Duration>> {
    env_var(name)?
        .map(|v| {
            let (num, mult) = match v.char_indices().last() {
                Some((i, 's')) => (&v[..i], 1.0),
                Some((i, 'm')) => (&v[..i], 60.0),
                Some((i, 'h')) => (&v[..i], 3600.0),
                Some((i, 'd')) => (&v[..i], 86_400.0),
                _ => (v.as_str(), 1.0),
            };
            num.trim()
                .parse::<f64>()
                .ok()
                .and_then(|x| Duration::try_from_secs_f64(x * mult).ok())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{name}={v:?} must be a span like 3600, 30m, 2h or 1d (0: all)"),
                    )
                })
        })
        .transpose()
}

impl Builder {
    /// Applies the `DIAG_*` environment variables over the current settings.
    pub fn from_env(mut self) -> Result<Self> {
        if let Some(a) = env_var(env::ADDR)? {
            self.addr = a;
        }
        if let Some(n) = env_number(env::HEAP_SAMPLE_BYTES)? {
            self.heap_sample_bytes = n;
        }
        if let Some(u) = env_var(env::HEAP_UNWINDER)? {
            self.heap_unwinder = match u.as_str() {
                "cached" => heap::Unwinder::Cached,
                "libgcc" => heap::Unwinder::Libgcc,
                _ => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!("{}={u:?} must be `cached` or `libgcc`", env::HEAP_UNWINDER),
                    ));
                }
            };
        }
        if let Some(t) = env_var(env::TOKEN)? {
            self.token = Some(t);
        }
        if let Some(n) = env_number(env::SNAPSHOT_MIN_INTERVAL_MS)? {
            self.snapshot_min_interval = Duration::from_millis(n);
        }
        if let Some(n) = env_number(env::MAX_PROFILE_SECONDS)? {
            self.max_profile_seconds = n;
        }
        if let Some(n) = env_number(env::BLOCKING_THRESHOLD_MS)? {
            self.blocking_threshold = Duration::from_millis(n);
        }
        if let Some(n) = env_number(env::TASK_SAMPLE)? {
            self.task_sample = u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}={n} must be between 1 and {}",
                        env::TASK_SAMPLE,
                        u32::MAX
                    ),
                )
            })?;
        }
        if let Some(n) = env_number(env::REQUEST_TIMEOUT_MS)? {
            self.request_timeout = Duration::from_millis(n);
        }
        if let Some(n) = env_number(env::MAX_RESPONSE_BYTES)? {
            self.max_response_bytes = n;
        }
        if let Some(n) = env_number(env::MAX_TRACKED_BLOCKS)? {
            self.max_tracked_blocks = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = env_number(env::HEAP_HISTORY_INTERVAL_SECS)? {
            if n > 86_400 {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}={n} must be at most 86400 (one day); 0 turns the history off",
                        env::HEAP_HISTORY_INTERVAL_SECS
                    ),
                ));
            }
            self.heap_history_interval = Duration::from_secs(n);
        }
        if let Some(n) = env_number(env::HEAP_HISTORY_POINTS)? {
            if !(2..=heap::MAX_HISTORY_POINTS as u64).contains(&n) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}={n} must be between 2 and {}",
                        env::HEAP_HISTORY_POINTS,
                        heap::MAX_HISTORY_POINTS
                    ),
                ));
            }
            self.heap_history_points = n as usize;
        }
        if let Some(a) = env_float(
            env::LEAK_ALPHA,
            "a number between 0 and 1, e.g. 0.01",
            |a| a > 0.0 && a < 1.0,
        )? {
            self.leak_alpha = a;
        }
        if let Some(r) = env_float(
            env::LEAK_MIN_RATE,
            "a non-negative number of bytes per second",
            |r| r >= 0.0 && r.is_finite(),
        )? {
            self.leak_min_rate = r;
        }
        if let Some(w) = env_span(env::LEAK_WINDOW)? {
            self.leak_window = w;
        }
        if let Some(v) = env_var(env::APP_CRATES)? {
            self = self.app_crates(v.split(','));
        }
        if let Some(n) = env_number(env::SYMBOL_CACHE_BYTES)? {
            self.symbol_cache_bytes = Some(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(v) = env_var(env::SYMBOL_IDLE_SECS)? {
            let idle = v
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!(
                            "{}={v:?} must be a non-negative number of seconds",
                            env::SYMBOL_IDLE_SECS
                        ),
                    )
                })?;
            self.symbol_idle = Some(idle);
        }
        if let Some(v) = env_var(env::SYMBOLIZE)? {
            self.symbolize = match v.trim() {
                "on" | "1" | "true" => true,
                "off" | "0" | "false" => false,
                _ => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!("{}={v:?} must be on or off", env::SYMBOLIZE),
                    ));
                }
            };
        }
        self.capture = self.capture.with_env()?;
        Ok(self)
    }

    /// Listener address (default [`DEFAULT_ADDR`]; port 0 picks a free port).
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = addr.into();
        self
    }

    /// Mean bytes between heap samples (default [`heap::DEFAULT_SAMPLE_BYTES`]): 0 turns
    /// sampling off, 1 records every allocation.
    pub fn heap_sample_bytes(mut self, bytes: u64) -> Self {
        self.heap_sample_bytes = bytes;
        self
    }

    /// Unwinder for the stacks of sampled allocations (default [`heap::Unwinder::Cached`]).
    pub fn heap_unwinder(mut self, unwinder: heap::Unwinder) -> Self {
        self.heap_unwinder = unwinder;
        self
    }

    /// Requires `Authorization: Bearer <token>` on every debug endpoint.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Cap on sampled blocks tracked at once (default [`heap::DEFAULT_MAX_TRACKED_BLOCKS`]);
    /// samples past it are dropped and counted.
    pub fn max_tracked_blocks(mut self, n: usize) -> Self {
        self.max_tracked_blocks = n;
        self
    }

    /// Minimum time between two heap snapshots (default [`DEFAULT_SNAPSHOT_MIN_INTERVAL`]);
    /// requests faster than that answer 429.
    pub fn snapshot_min_interval(mut self, interval: Duration) -> Self {
        self.snapshot_min_interval = interval;
        self
    }

    /// Cap on `/debug/pprof/profile?seconds=` (default
    /// [`DEFAULT_MAX_SECONDS`](crate::cpu::DEFAULT_MAX_SECONDS)); at least 1.
    pub fn max_profile_seconds(mut self, secs: u64) -> Self {
        self.max_profile_seconds = secs;
        self
    }

    /// A poll of an instrumented future (see `diag_core::spawn` and the route layer) running
    /// longer than this is recorded as a blocking event with the blocked thread's stack
    /// (default [`DEFAULT_BLOCKING_THRESHOLD`]; at least 1 ms).
    pub fn blocking_threshold(mut self, threshold: Duration) -> Self {
        self.blocking_threshold = threshold;
        self
    }

    /// Count one route request in `n` with the route's tokio-metrics `TaskMonitor` (default
    /// [`DEFAULT_TASK_SAMPLE`]; 1 counts every request; 0 is taken as 1). The watchdog still watches every poll and
    /// `/metrics` still records every request: only the per-route task health in
    /// `/debug/tasks` is sampled, which saves most of the layer's per-request cost.
    pub fn task_sample(mut self, n: u32) -> Self {
        self.task_sample = n.max(1);
        self
    }

    /// Deadline of a debug request beyond the time a CPU profile or task dump asks for
    /// (default [`DEFAULT_REQUEST_TIMEOUT`]); a request past it answers 503.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Largest debug response body in bytes (default [`DEFAULT_MAX_RESPONSE_BYTES`]); a larger
    /// one answers 503.
    pub fn max_response_bytes(mut self, bytes: u64) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Record the heap history every `interval`, keeping the last `points` (default
    /// [`heap::DEFAULT_HISTORY_INTERVAL`] and [`heap::DEFAULT_HISTORY_POINTS`]: one hour; a
    /// zero interval turns it off; the interval is at least 100 ms, the points 2 to 1440).
    /// See [`heap::set_history`].
    pub fn heap_history(mut self, interval: Duration, points: usize) -> Self {
        self.heap_history_interval = interval;
        self.heap_history_points = points;
        self
    }

    /// The leak alarm (run at every heap history point, see `GET /debug/leaks`): a stack is a
    /// suspect when its in-use bytes are `growing` at one-sided `p < alpha` (default
    /// [`heap::DEFAULT_LEAK_ALPHA`]) by at least `min_rate` bytes per second (default
    /// [`heap::DEFAULT_LEAK_MIN_RATE`], 1 MiB per hour) over the history of the last `window`
    /// (default zero: the whole history). See [`heap::set_leak_alarm`].
    pub fn leak_alarm(mut self, alpha: f64, min_rate: f64, window: Duration) -> Self {
        self.leak_alpha = alpha;
        self.leak_min_rate = min_rate;
        self.leak_window = window;
        self
    }

    /// Crates of the application besides the binary's own (`myapp_db` of a workspace, as Rust
    /// names crates: `-` is taken as `_`): heap sites are the innermost frame of one of these,
    /// never a dependency's. Needed only where the profile cannot show it (`debug = false`
    /// builds have no source files); see `DIAG_APP_CRATES`.
    pub fn app_crates<S: AsRef<str>>(mut self, crates: impl IntoIterator<Item = S>) -> Self {
        self.app_crates.extend(
            crates
                .into_iter()
                .map(|c| c.as_ref().trim().replace('-', "_"))
                .filter(|c| !c.is_empty()),
        );
        self
    }

    /// What the symbolizer may keep between debug requests (default
    /// [`heap::DEFAULT_SYMBOL_CACHE_BYTES`]): parsed DWARF, symbol tables and resolved
    /// addresses, measured as diag's own allocations; past it the DWARF state is dropped after
    /// the request, then the resolved addresses.
    pub fn symbol_cache_bytes(mut self, bytes: usize) -> Self {
        self.symbol_cache_bytes = Some(bytes);
        self
    }

    /// After this long without symbolizing, the symbolizer drops everything and gives the
    /// freed heap back (default [`heap::DEFAULT_SYMBOL_IDLE`]).
    pub fn symbol_idle(mut self, idle: Duration) -> Self {
        self.symbol_idle = Some(idle);
        self
    }

    /// Whether the service names the frames of the profiles it serves (default true). With
    /// false (`DIAG_SYMBOLIZE=off`), every profile holds addresses and mappings with build IDs
    /// only, as with `?symbolize=0`: the service never opens debug info or symbol tables, so a
    /// big binary costs it nothing, and `diag --binary` / `--debug-dir` / debuginfod or
    /// `go tool pprof BINARY` name them elsewhere. A request's `?symbolize=1` still asks for
    /// names.
    pub fn symbolize(mut self, on: bool) -> Self {
        self.symbolize = on;
        self
    }

    /// Do not start a listener (for apps that merge [`Diag::router`] into their own).
    pub fn no_listener(mut self) -> Self {
        self.listen = false;
        self
    }

    /// Whether `start()` installs the console-subscriber tracing subscriber (`console`
    /// feature; default true). Turn it off when the application installs its own subscriber
    /// and adds [`crate::console_layer()`] to it.
    #[cfg(feature = "console")]
    pub fn console(mut self, on: bool) -> Self {
        self.console = on;
        self
    }

    /// Registers a readiness check (see [`readiness`](crate::readiness)); effective at once.
    pub fn readiness<F, Fut>(self, name: &str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), String>> + Send + 'static,
    {
        crate::metrics::readiness::readiness(name, check);
        self
    }

    /// How long each readiness check may take before `GET /ready` counts it as failed
    /// (default [`DEFAULT_READINESS_TIMEOUT`](crate::DEFAULT_READINESS_TIMEOUT)); effective at once.
    pub fn readiness_timeout(self, timeout: Duration) -> Self {
        crate::metrics::readiness::set_timeout(timeout);
        self
    }

    /// Applies the settings and starts the listener.
    ///
    /// With the `console` feature, fails with `Unsupported` unless the build has
    /// `--cfg tokio_unstable` (see `console_layer()`, built with that feature).
    pub fn start(self) -> Result<Diag> {
        if self.token.as_ref().is_some_and(|t| t.len() < 8) {
            return Err(Error::new(
                ErrorKind::Config,
                "the diag token must be at least 8 characters",
            ));
        }
        #[cfg(feature = "console")]
        if self.console {
            crate::console::start()?;
        }
        crate::stack::process::set_app_crates(&self.app_crates);
        if let Some(n) = self.symbol_cache_bytes {
            crate::stack::resolve::set_cache_bytes(n);
        }
        if let Some(d) = self.symbol_idle {
            crate::stack::resolve::set_idle(d);
        }
        crate::stack::resolve::set_default(if self.symbolize {
            crate::stack::resolve::Naming::Symbolized
        } else {
            crate::stack::resolve::Naming::Raw
        });
        if self.symbolize {
            crate::stack::process::warm_app_crates();
        }
        heap::set_unwinder(self.heap_unwinder);
        heap::set_sample_rate(self.heap_sample_bytes);
        crate::tasks::set_task_sample(self.task_sample);
        crate::tasks::on_init(self.blocking_threshold);
        heap::set_max_tracked_blocks(self.max_tracked_blocks);
        heap::set_leak_alarm(self.leak_alpha, self.leak_min_rate, self.leak_window);
        heap::set_history(self.heap_history_interval, self.heap_history_points);
        self.capture.apply();
        crate::cpu::set_max_seconds(self.max_profile_seconds);
        crate::http::limits::SNAPSHOTS
            .set_min_interval_ms(self.snapshot_min_interval.as_millis() as u64);
        crate::http::limits::set_request_timeout_ms(
            u64::try_from(self.request_timeout.as_millis()).unwrap_or(u64::MAX),
        );
        crate::http::limits::set_max_response_bytes(self.max_response_bytes);
        let token: Option<Arc<str>> = self.token.map(Into::into);
        let server = if self.listen {
            let addr: SocketAddr = self.addr.parse().map_err(|_| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "listener address {:?} is not host:port (e.g. 127.0.0.1:6060)",
                        self.addr
                    ),
                )
            })?;
            Some(start_server(ServerConfig {
                addr,
                token: token.clone(),
            })?)
        } else {
            None
        };
        Ok(Diag::started(server, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_env() {
        let _env = capture::ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // Only this test touches the environment (DIAG_TASK_SAMPLE, DIAG_HEAP_UNWINDER,
        // DIAG_SYMBOL_IDLE_SECS).
        let set = |v: &str| {
            // SAFETY: no other test of this binary reads or writes this variable.
            unsafe { std::env::set_var(env::TASK_SAMPLE, v) }
        };
        set("16");
        assert_eq!(Builder::default().from_env().unwrap().task_sample, 16);
        for bad in ["0", "-1", "x", "4294967296"] {
            set(bad);
            let e = Builder::default().from_env().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.to_string().contains("DIAG_TASK_SAMPLE"), "{e}");
        }
        // SAFETY: as above.
        unsafe { std::env::remove_var(env::TASK_SAMPLE) };
        assert_eq!(
            Builder::default().from_env().unwrap().task_sample,
            DEFAULT_TASK_SAMPLE
        );
        assert_eq!(Builder::default().task_sample(0).task_sample, 1);

        let set = |v: &str| {
            // SAFETY: as above, for DIAG_HEAP_UNWINDER.
            unsafe { std::env::set_var(env::HEAP_UNWINDER, v) }
        };
        set("libgcc");
        let b = Builder::default().from_env().unwrap();
        assert_eq!(b.heap_unwinder, heap::Unwinder::Libgcc);
        set("cached");
        let b = Builder::default().from_env().unwrap();
        assert_eq!(b.heap_unwinder, heap::Unwinder::Cached);
        set("framehop");
        assert!(
            Builder::default().from_env().is_err(),
            "framehop is no longer an unwinder"
        );
        set("frame-pointer");
        let e = Builder::default().from_env().unwrap_err();
        assert!(e.to_string().contains("DIAG_HEAP_UNWINDER"), "{e}");
        // SAFETY: as above.
        unsafe { std::env::remove_var(env::HEAP_UNWINDER) };

        let set = |v: &str| {
            // SAFETY: as above, for DIAG_SYMBOL_IDLE_SECS.
            unsafe { std::env::set_var(env::SYMBOL_IDLE_SECS, v) }
        };
        assert_eq!(Builder::default().from_env().unwrap().symbol_idle, None);
        set("0.5");
        let b = Builder::default().from_env().unwrap();
        assert_eq!(b.symbol_idle, Some(Duration::from_millis(500)));
        set("soon");
        let e = Builder::default().from_env().unwrap_err();
        assert!(e.to_string().contains("DIAG_SYMBOL_IDLE_SECS"), "{e}");
        // SAFETY: as above.
        unsafe { std::env::remove_var(env::SYMBOL_IDLE_SECS) };
    }
}
