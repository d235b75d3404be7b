//! Values for people, one spelling everywhere (the CLI's tables, its HTML report and the
//! flame graph SVGs): bytes in binary units with a space (`12.4 MiB`), durations glued to
//! their unit (`850ns`, `12.5µs`, `350.0ms`, `2.10s`), counts with thousands separators
//! (`1,234,567`), percentages with one decimal (`93.1%`), rates as a value per unit of time
//! (`+1.5 MiB/min`).

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.4 MiB`.
pub fn bytes(v: i64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let sign = if v < 0 { "-" } else { "" };
    let abs = v.unsigned_abs();
    if abs < 1024 {
        return format!("{sign}{abs} B");
    }
    let mut x = abs as f64 / 1024.0;
    let mut unit = 0;
    // 1023.95 and up would print as `1024.0`: show it in the next unit instead.
    while x >= 1023.95 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    format!("{sign}{x:.1} {}", UNITS[unit])
}

/// A count with thousands separators: `1,234,567`.
pub fn count(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Nanoseconds as a duration: `850ns`, `12.5µs`, `350.0ms`, `2.10s`.
pub fn nanos(v: i64) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let abs = v.unsigned_abs();
    let f = abs as f64;
    match abs {
        0..1_000 => format!("{sign}{abs}ns"),
        1_000..1_000_000 => format!("{sign}{:.1}µs", f / 1e3),
        1_000_000..1_000_000_000 => format!("{sign}{:.1}ms", f / 1e6),
        _ => format!("{sign}{:.2}s", f / 1e9),
    }
}

/// Milliseconds given as a float (as JSON carries them) as a duration: `0.25ms`, `12.5ms`,
/// `2.10s`; below 10 ms with two decimals, where a lag or a latency still differs.
pub fn millis(ms: f64) -> String {
    if ms.is_finite() && ms.abs() < 10.0 {
        format!("{ms:.2}ms")
    } else {
        nanos((ms * 1e6).round() as i64)
    }
}

/// A value in its profile unit (`bytes`, `nanoseconds`, anything else as a bare count).
pub fn value(v: i64, unit: &str) -> String {
    match unit {
        "bytes" => bytes(v),
        "nanoseconds" => nanos(v),
        _ => count(v),
    }
}

/// Like [`value`] with an explicit `+` for growth.
pub fn signed(v: i64, unit: &str) -> String {
    let s = value(v, unit);
    if v > 0 { format!("+{s}") } else { s }
}

/// Like [`value`], a unit other than `bytes`, `nanoseconds` and `count` named after the
/// number: `10 samples`; for text where no column header says what was counted.
pub fn named(v: i64, unit: &str) -> String {
    match unit {
        "bytes" | "nanoseconds" | "count" | "" => value(v, unit),
        _ => format!("{} {unit}", count(v)),
    }
}

/// Like [`named`] with an explicit `+` for growth.
pub fn signed_named(v: i64, unit: &str) -> String {
    let s = named(v, unit);
    if v > 0 { format!("+{s}") } else { s }
}

/// A change of `v` (in `unit`) per `per` (`s`, `min`, `h`, `snap`): `+1.5 MiB/min`.
pub fn rate(v: i64, unit: &str, per: &str) -> String {
    format!("{}/{per}", signed(v, unit))
}

/// A percentage with one decimal: `93.1%`.
pub fn percent(p: f64) -> String {
    format!("{p:.1}%")
}

/// A change in percent with one decimal and its sign: `+50.0%`, `-3.2%`.
pub fn signed_percent(p: f64) -> String {
    format!("{p:+.1}%")
}

/// A percentage rounded to a whole number: `93%` (shares where a decimal is noise).
pub fn whole_percent(p: f64) -> String {
    format!("{p:.0}%")
}

/// A time in seconds since the Unix epoch as RFC 3339 UTC: `2026-12-07T05:01:02Z`.
pub fn utc(secs: i64) -> String {
    let [y, m, d, hh, mm, ss] = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// A time in seconds since the Unix epoch as a UTC stamp for file names: `20261207-050102`.
pub fn utc_stamp(secs: i64) -> String {
    let [y, m, d, hh, mm, ss] = civil(secs);
    format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}")
}

/// Year, month, day, hour, minute, second (UTC) of `secs` since the Unix epoch.
fn civil(secs: i64) -> [i64; 6] {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    [y, m, d, rem / 3600, rem % 3600 / 60, rem % 60]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_for_each_unit() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(13_002_342), "12.4 MiB");
        assert_eq!(bytes(40_714_874), "38.8 MiB");
        assert_eq!(bytes(-1536), "-1.5 KiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(bytes(i64::MIN), "-8.0 EiB");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(nanos(850), "850ns");
        assert_eq!(nanos(12_500), "12.5µs");
        assert_eq!(nanos(2_500_000), "2.5ms");
        assert_eq!(nanos(350_000_000), "350.0ms");
        assert_eq!(nanos(2_100_000_000), "2.10s");
        assert_eq!(millis(0.25), "0.25ms");
        assert_eq!(millis(12.5), "12.5ms");
        assert_eq!(millis(2100.0), "2.10s");
        assert_eq!(percent(93.14), "93.1%");
        assert_eq!(signed_percent(50.0), "+50.0%");
        assert_eq!(signed_percent(-3.24), "-3.2%");
        assert_eq!(whole_percent(92.6), "93%");
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_619_662), "2026-12-07T05:01:02Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn values_follow_their_profile_unit() {
        assert_eq!(value(2048, "bytes"), "2.0 KiB");
        assert_eq!(value(2_500_000, "nanoseconds"), "2.5ms");
        assert_eq!(value(1234, "samples"), "1,234");
        assert_eq!(signed(2048, "bytes"), "+2.0 KiB");
        assert_eq!(signed(-3, "count"), "-3");
        assert_eq!(signed(0, "bytes"), "0 B");
        assert_eq!(named(1234, "count"), "1,234");
        assert_eq!(named(-512, "bytes"), "-512 B");
        assert_eq!(signed_named(10, "samples"), "+10 samples");
        assert_eq!(rate(1536 * 1024, "bytes", "min"), "+1.5 MiB/min");
        assert_eq!(rate(-3, "count", "s"), "-3/s");
    }
}
