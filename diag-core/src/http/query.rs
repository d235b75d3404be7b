//! Strict query-string parsing: unknown parameters and malformed values are a 400, never
//! silently ignored.

use super::error::HttpError;

/// Parsed `name=value` pairs of one request, checked against the names an endpoint accepts.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `raw` (the part after `?`), rejecting names not in `allowed` and repeats.
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, HttpError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(HttpError::bad_request(if allowed.is_empty() {
                    format!("unknown query parameter {k:?}: this endpoint takes none")
                } else {
                    format!(
                        "unknown query parameter {k:?}; accepted: {}",
                        allowed.join(", ")
                    )
                }));
            }
            if pairs.iter().any(|(n, _)| *n == k) {
                return Err(HttpError::bad_request(format!(
                    "query parameter {k:?} given twice"
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self { pairs })
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An unsigned integer in `min..=max`, or `default` when absent.
    pub(crate) fn u64_in(
        &self,
        name: &str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, HttpError> {
        let Some(v) = self.raw(name) else {
            return Ok(default);
        };
        match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(HttpError::bad_request(format!(
                "query parameter {name}={v:?} must be an integer from {min} to {max}"
            ))),
        }
    }

    /// `symbolize=0|1`: `Some` naming when given (0 serves addresses and mappings only), `None`
    /// (the process default, `DIAG_SYMBOLIZE`) when absent.
    pub(crate) fn naming(&self) -> Result<Option<crate::stack::resolve::Naming>, HttpError> {
        use crate::stack::resolve::Naming;
        Ok(match self.raw("symbolize") {
            None => None,
            Some(_) => Some(match self.u64_in("symbolize", 0, 1, 1)? {
                0 => Naming::Raw,
                _ => Naming::Symbolized,
            }),
        })
    }

    /// One of `choices`, or `default` when absent.
    #[allow(dead_code)] // used by endpoints with enumerated parameters (format=...)
    pub(crate) fn one_of<'a>(
        &self,
        name: &str,
        choices: &[&'a str],
        default: &'a str,
    ) -> Result<&'a str, HttpError> {
        let Some(v) = self.raw(name) else {
            return Ok(default);
        };
        choices.iter().copied().find(|c| *c == v).ok_or_else(|| {
            HttpError::bad_request(format!(
                "query parameter {name}={v:?} must be one of: {}",
                choices.join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_repeated_and_out_of_range() {
        assert!(Params::parse(Some("bogus=1"), &["debug"]).is_err());
        assert!(Params::parse(Some("debug=1&debug=0"), &["debug"]).is_err());
        let p = Params::parse(Some("debug=7"), &["debug"]).unwrap();
        let e = p.u64_in("debug", 0, 1, 0).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.reason.contains("debug"), "{}", e.reason);
        let p = Params::parse(Some("debug=abc"), &["debug"]).unwrap();
        assert!(p.u64_in("debug", 0, 1, 0).is_err());
        let p = Params::parse(None, &["debug"]).unwrap();
        assert_eq!(p.u64_in("debug", 0, 1, 0).unwrap(), 0);
        let p = Params::parse(Some("debug=1"), &["debug"]).unwrap();
        assert_eq!(p.u64_in("debug", 0, 1, 0).unwrap(), 1);
    }
}
