//! The Prometheus text exposition format (the `/metrics` that Prometheus scrapes), parsed
//! into series: `name{labels} value [timestamp]`. A small parser of our own rather than a
//! JSON endpoint: the same `/metrics` that Prometheus scrapes is the single source of truth
//! for `diag top URL`, `diag report` and `diag demo`.

use anyhow::{Context, Result, bail};

/// One series of a scrape: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

impl Series {
    pub(crate) fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text exposition format (0.0.4): comments and blank lines skipped,
/// label values unescaped, timestamps ignored. A malformed line is an error naming it.
pub(crate) fn parse_exposition(text: &str) -> Result<Vec<Series>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).with_context(|| format!("line {}: {line:?}", i + 1))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Series> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .context("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        bail!("no metric name");
    }
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let end = loop {
            // Skip separators.
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(&(start, c)) = chars.peek() else {
                bail!("unterminated label set");
            };
            if c == '}' {
                break start + 1;
            }
            let eq = r[start..].find('=').context("label without '='")? + start;
            let key = r[start..eq].trim().to_owned();
            while chars.peek().is_some_and(|&(j, _)| j <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                bail!("label {key} value is not quoted");
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => bail!("unterminated label value"),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => bail!("unterminated label value"),
                }
            }
            labels.push((key, value));
        };
        rest = &r[end..];
    }
    let value = rest.split_whitespace().next().context("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse::<f64>()
            .with_context(|| format!("value {v:?} is not a number"))?,
    };
    Ok(Series {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_escapes_and_timestamps() {
        let s = parse_exposition(crate::scrape::tests::B).unwrap();
        assert_eq!(s.len(), 12);
        assert_eq!(s[3].label("route"), Some("/we\"ird\\x"));
        assert_eq!(s[3].value, 0.0);
        assert!(parse_exposition("x{a=1} 2").is_err());
        assert!(parse_exposition("x{a=\"1\" 2").is_err());
        assert!(parse_exposition("x{a=\"1\"} two").is_err());
        assert_eq!(parse_exposition("x +Inf").unwrap()[0].value, f64::INFINITY);
    }
}
