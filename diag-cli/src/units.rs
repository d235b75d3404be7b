//! Human units for tables, in `diag_core::units`'s one spelling (`12.4 MiB`, `1,234`,
//! `350.0ms`, `+12.4 MiB`), short source paths and `function (file:line)`; and the durations
//! and sizes given on the command line (`2s`, `500ms`, `5m`, `1h`; `10MiB`).

use std::time::Duration;

use anyhow::{Context, Result, bail};

pub(crate) use diag_core::units::{
    bytes, millis, nanos, percent, rate, signed, signed_percent, value, whole_percent,
};

/// A source path made short for a table: crates from the registry as `bytes-1.12.2/src/x.rs`,
/// the standard library as `library/alloc/src/x.rs`, files under the current directory
/// relative to it; anything else as it is.
pub(crate) fn short_file(path: &str) -> String {
    if let Some(i) = path.find("/registry/src/") {
        let rest = &path[i + "/registry/src/".len()..];
        if let Some((_index, krate)) = rest.split_once('/') {
            return krate.to_owned();
        }
    }
    if let Some(rest) = path.strip_prefix("/rustc/")
        && let Some((_hash, lib)) = rest.split_once('/')
    {
        return lib.to_owned();
    }
    if let Ok(cwd) = std::env::current_dir()
        && let Some(cwd) = cwd.to_str()
        && let Some(rest) = path.strip_prefix(cwd)
        && let Some(rest) = rest.strip_prefix('/')
    {
        return rest.to_owned();
    }
    path.to_owned()
}

/// `function (file:line)` when the file is known, else `function`; the function by its short
/// name (generic arguments elided, a body named by its enclosing function) unless `full`.
pub(crate) fn located_as(function: &str, file: Option<&str>, line: u32, full: bool) -> String {
    let short;
    let function = if full {
        function
    } else {
        short = diag_core::profile::sites::short_name(function);
        short.as_str()
    };
    match file {
        Some(file) if line > 0 => format!("{function} ({}:{line})", short_file(file)),
        Some(file) => format!("{function} ({})", short_file(file)),
        None => function.to_owned(),
    }
}

/// Parses the value of `flag`: a number with a unit, `500ms`, `2s`, `1.5m`, `1h`, between
/// `min` and `max` seconds.
pub(crate) fn duration(flag: &str, s: &str, min: f64, max: f64) -> Result<Duration> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86_400.0)
    } else {
        bail!("{flag} {s:?}: give a unit (ms, s, m, h, d), e.g. 2s, 500ms or 5m");
    };
    let v: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("{flag} {s:?} is not a duration like 2s, 500ms or 5m"))?;
    let secs = v * mult;
    if !(min..=max).contains(&secs) {
        bail!(
            "{flag} {s:?} must be between {} and {}",
            span(Duration::from_secs_f64(min)),
            span(Duration::from_secs_f64(max))
        );
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a byte count: plain bytes (`1048576`) or a number with a unit, `B`, `KB`/`KiB`,
/// `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB` (both spellings binary, as the tables print them), e.g.
/// `10MiB`, `1.5 GiB`, `512k`. The error says what is accepted.
pub(crate) fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}`; give bytes or a size like 512KiB, 10MiB, 1GiB"
            ));
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 1048576, 512KiB, 10MiB or 1GiB"))?;
    let bytes = v * mult as f64;
    if !(bytes >= 0.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// A span of time for people: `500ms`, `4.6s`, `30s`, `2m30s`, `1h5m`.
pub(crate) fn span(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 10_000 && !ms.is_multiple_of(1000) {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("10MiB"), Ok(10 << 20));
        assert_eq!(parse_bytes("10 MB"), Ok(10 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert!(
            parse_bytes("10 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("-5").is_err());
    }

    #[test]
    fn paths_are_shortened() {
        assert_eq!(
            short_file(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/bytes-1.12.2/src/bytes_mut.rs"
            ),
            "bytes-1.12.2/src/bytes_mut.rs"
        );
        assert_eq!(
            short_file("/rustc/5980761/library/alloc/src/vec/mod.rs"),
            "library/alloc/src/vec/mod.rs"
        );
        assert_eq!(short_file("src/main.rs"), "src/main.rs");
        assert_eq!(located_as("f", Some("src/a.rs"), 3, true), "f (src/a.rs:3)");
        assert_eq!(located_as("f", Some("src/a.rs"), 0, true), "f (src/a.rs)");
        assert_eq!(located_as("f", None, 3, true), "f");
        assert_eq!(located_as("a::f<u8>::{{closure}}", None, 3, false), "a::f");
        assert_eq!(located_as("a::f<u8>", None, 3, true), "a::f<u8>");
    }

    #[test]
    fn durations() {
        let d = |s| duration("--every", s, 1.0, 86_400.0);
        assert_eq!(d("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(d("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(d("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(d("1000ms").unwrap(), Duration::from_secs(1));
        let e = d("500ms").unwrap_err().to_string();
        assert_eq!(e, "--every \"500ms\" must be between 1s and 24h");
        assert!(d("30").unwrap_err().to_string().contains("give a unit"));
        assert!(d("xs").is_err());
        assert!(d("-5s").is_err());
        assert_eq!(span(Duration::from_millis(250)), "250ms");
        assert_eq!(span(Duration::from_millis(4_640)), "4.6s");
        assert_eq!(span(Duration::from_millis(4_000)), "4s");
        assert_eq!(span(Duration::from_secs(150)), "2m30s");
        assert_eq!(span(Duration::from_secs(3900)), "1h5m");
    }
}
