//! Talking to a live service's debug listener: URL handling, bearer token, timeouts, and
//! checking that what came back is what was asked for.

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Largest body accepted from a debug endpoint.
const MAX_BODY: u64 = 512 << 20;
/// Times a request answered 429 is tried again.
const RETRIES_429: u32 = 3;
/// The longest `Retry-After` (seconds) waited for; a longer one is reported as the error.
const MAX_RETRY_AFTER: u64 = 5;

/// A debug listener at `base` (e.g. `http://127.0.0.1:6060`).
pub(crate) struct Remote {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    timeout: Duration,
}

/// One answer from a debug endpoint.
pub(crate) struct Reply {
    pub(crate) content_type: String,
    pub(crate) body: Vec<u8>,
}

impl Remote {
    /// A client for `base` with a `timeout` for each whole request.
    pub(crate) fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Self> {
        if base.starts_with("https://") {
            bail!(
                "{base}: https is not supported; the debug listener speaks plain http (reach it over loopback or an SSH tunnel)"
            );
        }
        if !base.starts_with("http://") {
            bail!(
                "{base:?} is not a URL: expected the debug listener's base, like http://127.0.0.1:6060"
            );
        }
        let base = base.trim_end_matches('/').to_owned();
        // A URL that already names an endpoint is cut back to its base.
        let base = match base.find("/debug/") {
            Some(i) => base[..i].to_owned(),
            None => base,
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(Self {
            base,
            token,
            agent,
            timeout,
        })
    }

    /// The base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The timeout of each whole request.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET base + path`; any status but 200 is an error carrying the server's reason. A 429
    /// (the listener's rate limit: one heap snapshot every 200 ms by default, or one already
    /// being built) is retried after its `Retry-After`, up to [`RETRIES_429`] times.
    pub(crate) fn get(&self, path: &str) -> Result<Reply> {
        let url = format!("{}{}", self.base, path);
        let mut attempt = 0;
        let (status, content_type, body) = loop {
            let (status, content_type, retry_after, body) = self.get_once(&url)?;
            match retry_after {
                Some(secs) if status == 429 && attempt < RETRIES_429 && secs <= MAX_RETRY_AFTER => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(secs));
                }
                _ => break (status, content_type, body),
            }
        };
        if status != 200 {
            let reason = String::from_utf8_lossy(&body);
            let reason = reason.lines().next().unwrap_or("").trim();
            match status {
                401 => bail!("{url}: 401 unauthorized ({reason}); pass --token or set DIAG_TOKEN"),
                404 => bail!(
                    "{url}: 404 not found: is this a diag debug listener (diag_core::init() or diag_core::router())?"
                ),
                code => bail!("{url}: HTTP {code}: {reason}"),
            }
        }
        Ok(Reply { content_type, body })
    }

    /// One `GET`: status, content type, `Retry-After` in seconds (if given) and body.
    fn get_once(&self, url: &str) -> Result<(u16, String, Option<u64>, Vec<u8>)> {
        let mut req = self.agent.get(url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.call().with_context(|| format!("cannot reach {url}"))?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after").and_then(|v| v.trim().parse().ok());
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .with_context(|| format!("reading the answer of {url}"))?;
        Ok((status, content_type, retry_after, body))
    }

    /// `GET base + path` expecting a pprof profile (gzip'd protobuf).
    /// With files to name profiles given (`--binary`, `--debug-dir`), the profile is asked
    /// for unsymbolized (`symbolize=0`): the CLI names it, the service pays nothing.
    pub(crate) fn get_profile(&self, path: &str) -> Result<Reply> {
        let path = &crate::symbols::profile_path(path);
        let reply = self.get(path)?;
        if !reply.content_type.starts_with("application/octet-stream")
            || !diag_core::profile::pprof_codec::is_gzip(&reply.body)
        {
            bail!(
                "{}{}: expected a gzip'd pprof profile, got {} ({} bytes)",
                self.base,
                path,
                if reply.content_type.is_empty() {
                    "no content type"
                } else {
                    &reply.content_type
                },
                reply.body.len()
            );
        }
        Ok(reply)
    }

    /// `GET base + /debug/tasks`, its blocking stacks named: by the service, or here from the
    /// given files when there are any (asked for unsymbolized, as [`Remote::get_profile`]).
    /// With the JSON to print: the service's own bytes when it named the stacks (fields a newer
    /// service adds are kept), else the named answer.
    pub(crate) fn get_tasks(&self) -> Result<(diag_core::wire::Tasks, Vec<u8>)> {
        let path = crate::symbols::profile_path("/debug/tasks");
        let reply = self.get(&path)?;
        let mut tasks: diag_core::wire::Tasks = serde_json::from_slice(&reply.body)
            .with_context(|| format!("{}/debug/tasks did not answer its JSON", self.base))?;
        if tasks.raw.is_none() {
            return Ok((tasks, reply.body));
        }
        crate::symbols::name_tasks(&mut tasks, &format!("{}/debug/tasks", self.base))?;
        let json = serde_json::to_vec(&tasks)?;
        Ok((tasks, json))
    }
}

/// Runs `work` while stderr ticks the seconds elapsed of the `expected_secs` it should take
/// (`diag: <what>... 3/30 s`): one line redrawn every second on a terminal, a new line every
/// 5 s otherwise (logs, pipes).
pub(crate) fn with_progress<T>(what: &str, expected_secs: u64, work: impl FnOnce() -> T) -> T {
    use std::io::{IsTerminal, Write};
    use std::sync::mpsc;

    let tty = std::io::stderr().is_terminal();
    let (every, start_of_line, end_of_line) = if tty {
        (Duration::from_secs(1), "\r\x1b[2K", "")
    } else {
        (Duration::from_secs(5), "", "\n")
    };
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let what = what.to_owned();
    let ticker = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        loop {
            let secs = start.elapsed().as_secs();
            let state = if secs < expected_secs {
                format!("{secs}/{expected_secs} s")
            } else {
                format!("{secs} s, waiting for the answer")
            };
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{start_of_line}diag: {what}... {state}{end_of_line}");
            let _ = err.flush();
            drop(err);
            if !matches!(
                done_rx.recv_timeout(every),
                Err(mpsc::RecvTimeoutError::Timeout)
            ) {
                break;
            }
        }
        if tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    });
    let out = work();
    let _ = done_tx.send(());
    let _ = ticker.join();
    out
}

/// `host-port` of a base URL, for file names.
pub(crate) fn host_tag(base: &str) -> String {
    let rest = base
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let host = rest.split('/').next().unwrap_or("host");
    host.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `YYYYmmdd-HHMMSS` in UTC, for file names.
pub(crate) fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    timestamp_at(secs)
}

/// `YYYYmmdd-HHMMSS` in UTC of `secs` since the Unix epoch.
pub(crate) fn timestamp_at(secs: i64) -> String {
    diag_core::units::utc_stamp(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_normalised_and_bad_urls_refused() {
        let r = Remote::new("http://h:1/debug/pprof/heap", None, Duration::from_secs(1)).unwrap();
        assert_eq!(r.base(), "http://h:1");
        assert!(Remote::new("h:1", None, Duration::from_secs(1)).is_err());
        assert!(Remote::new("https://h:1", None, Duration::from_secs(1)).is_err());
        assert_eq!(host_tag("http://127.0.0.1:6060"), "127.0.0.1-6060");
        assert_eq!(timestamp().len(), 15);
        assert_eq!(timestamp_at(0), "19700101-000000");
        assert_eq!(timestamp_at(1_795_824_000 + 3_723), "20261128-010203");
    }
}
