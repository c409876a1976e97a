//! Query strings: percent-decoding and typed parameters with `400`s that name the parameter.

use crate::error::{ApiError, Code};

/// Decodes `%XX` escapes (and `+` as space, as in form encoding). `None` for bad escapes,
/// invalid UTF-8 or a NUL character (PostgreSQL text cannot hold it).
/// Strict on purpose, which is why the `percent-encoding` crate is not used: it passes a
/// malformed escape (`%zz`, a lone `%`) through as text, where this answers None and the caller
/// refuses the request (`400 invalid_path` / `invalid_parameter`), and a NUL byte is refused
/// here for PostgreSQL's sake.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// Parsed query parameters (last value wins).
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let bad = || {
                ApiError::bad_request(
                    Code::InvalidParameter,
                    format!("malformed query parameter `{part}`"),
                )
            };
            pairs.push((
                percent_decode(k, true).ok_or_else(bad)?,
                percent_decode(v, true).ok_or_else(bad)?,
            ));
        }
        Ok(Query { pairs })
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` when given and not empty.
    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key).filter(|s| !s.is_empty()).map(str::to_owned)
    }

    /// An RFC 3339 timestamp; anything else is a 400 naming `key`.
    pub fn timestamp(&self, key: &str) -> Result<Option<queen_engine::Timestamp>, ApiError> {
        match self.get(key).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => crate::time::parse(s).map(Some).ok_or_else(|| {
                ApiError::bad_request(
                    Code::InvalidParameter,
                    format!("query parameter `{key}` must be an RFC 3339 timestamp, got `{s}`"),
                )
            }),
        }
    }

    /// Booleans: `true`/`1` are true, anything else false (Queen's rule).
    pub fn flag(&self, key: &str, default: bool) -> bool {
        self.get(key).map_or(default, |v| v == "true" || v == "1")
    }

    /// An integer in `min..=max`; anything that does not parse or fit is a 400 naming `key`.
    pub fn int(
        &self,
        key: &str,
        default: Option<u64>,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::bad_request(
                    Code::InvalidParameter,
                    format!(
                        "query parameter `{key}` must be an integer from {min} to {max}, got `{v}`"
                    ),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_types() {
        let q = Query::parse(Some("batch=10&wait=1&group=a%20b+c&x&autoAck=yes")).unwrap();
        assert_eq!(q.int("batch", Some(1), 1, 100).unwrap(), Some(10));
        assert!(q.flag("wait", false));
        assert!(!q.flag("autoAck", true));
        assert_eq!(q.get("group"), Some("a b c"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.int("missing", Some(5), 1, 9).unwrap(), Some(5));
        let err = Query::parse(Some("batch=ten"))
            .unwrap()
            .int("batch", None, 1, 10)
            .unwrap_err();
        assert!(err.message.contains("batch"));
        assert!(
            Query::parse(Some("batch=0"))
                .unwrap()
                .int("batch", None, 1, 10)
                .is_err()
        );
        assert!(Query::parse(Some("a=%zz")).is_err());
        assert_eq!(percent_decode("a%2Fb+c", false).as_deref(), Some("a/b+c"));
    }
}
