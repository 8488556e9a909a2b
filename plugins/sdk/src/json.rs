//! JSON helpers whose errors name the field path, e.g. `data.source_key is missing`.
//!
//! ```
//! use portico_sdk::json;
//! let v = json::parse(br#"{"data":{"id":"42","n":3}}"#).unwrap();
//! assert_eq!(json::str_at(&v, "data.id").unwrap(), "42");
//! let e = json::str_at(&v, "data.email").unwrap_err();
//! assert_eq!(e.to_string(), "data.email is missing");
//! ```

pub use serde_json::Value;
use std::fmt;

/// A problem with one field of a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `data.fields.city`; `$` for the document itself.
    pub path: String,
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.problem)
    }
}

impl From<FieldError> for crate::AdapterError {
    fn from(e: FieldError) -> Self {
        let mut error = crate::AdapterError::permanent("invalid_payload", e.to_string());
        error.fields = vec![(e.path, e.problem)];
        error
    }
}

/// Parse bytes as JSON; the error says where the syntax breaks.
///
/// ```
/// assert!(portico_sdk::json::parse(b"{").unwrap_err().to_string().starts_with("$ is not valid JSON"));
/// ```
pub fn parse(bytes: &[u8]) -> Result<Value, FieldError> {
    serde_json::from_slice(bytes).map_err(|e| FieldError {
        path: "$".into(),
        problem: format!("is not valid JSON: {e}"),
    })
}

/// The value at a dotted path (`a.b.0.c`: numbers index arrays).
///
/// ```
/// let v = portico_sdk::json::parse(br#"{"a":[{"b":1}]}"#).unwrap();
/// assert_eq!(portico_sdk::json::at(&v, "a.0.b").unwrap(), &serde_json::json!(1));
/// ```
pub fn at<'a>(value: &'a Value, path: &str) -> Result<&'a Value, FieldError> {
    let mut current = value;
    for part in path.split('.') {
        let next = match current {
            Value::Object(map) => map.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        current = match next {
            Some(Value::Null) | None => {
                return Err(FieldError {
                    path: path.into(),
                    problem: "is missing".into(),
                });
            }
            Some(v) => v,
        };
    }
    Ok(current)
}

/// A string at `path`; numbers are accepted and written out (ids often come as either).
///
/// ```
/// let v = portico_sdk::json::parse(br#"{"id":123456789012}"#).unwrap();
/// assert_eq!(portico_sdk::json::str_at(&v, "id").unwrap(), "123456789012");
/// ```
pub fn str_at(value: &Value, path: &str) -> Result<String, FieldError> {
    match at(value, path)? {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(FieldError {
            path: path.into(),
            problem: format!("must be a string, not {}", kind(other)),
        }),
    }
}

/// Like [`str_at`], but a missing field or an empty string is `None`.
///
/// ```
/// let v = portico_sdk::json::parse(br#"{"a":""}"#).unwrap();
/// assert_eq!(portico_sdk::json::opt_str_at(&v, "a").unwrap(), None);
/// assert_eq!(portico_sdk::json::opt_str_at(&v, "b").unwrap(), None);
/// ```
pub fn opt_str_at(value: &Value, path: &str) -> Result<Option<String>, FieldError> {
    match str_at(value, path) {
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => Ok(Some(s)),
        Err(e) if e.problem == "is missing" => Ok(None),
        Err(e) => Err(e),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_named_in_errors() {
        let v = parse(br#"{"data":{"id":true,"list":[1]}}"#).unwrap();
        assert_eq!(
            str_at(&v, "data.id").unwrap_err().to_string(),
            "data.id must be a string, not a boolean"
        );
        assert_eq!(
            at(&v, "data.list.3").unwrap_err().to_string(),
            "data.list.3 is missing"
        );
        assert_eq!(str_at(&v, "data.list.0").unwrap(), "1");
    }
}
