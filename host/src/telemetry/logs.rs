//! Logs on stderr: text for people (the default), or `PORTICO_LOG_FORMAT=json`
//! for log pipelines: one JSON object per line with time, level, target,
//! message, the event's fields and the fields of every span it happened in
//! (correlation_id, plugin, event_id, …), all at the top level.
//!
//! Fields carry what callers and providers sent (a JSON key, a header, an
//! adapter's message), so in both formats every field is escaped (a newline
//! cannot break a line or forge another) and cut at [`MAX_FIELD_CHARS`].

use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::io::IsTerminal;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `PORTICO_LOG_FORMAT`: unset or empty → text.
    pub fn from_env_value(value: Option<&str>) -> Result<LogFormat, String> {
        match value.map(str::trim) {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!(
                "PORTICO_LOG_FORMAT = {other:?} is not a log format; use text (the default) or json"
            )),
        }
    }
}

/// Install the process's subscriber: logs (`PORTICO_LOG` filters them) and,
/// when configured, the OpenTelemetry layer (see [`super::traces`]).
pub fn init(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_env("PORTICO_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,wasmtime=warn,cranelift=warn,sqlx=warn"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(super::traces::layer());
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .fmt_fields(
                        tracing_subscriber::fmt::format::debug_fn(text_field).delimited(" "),
                    ),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false)
                    .fmt_fields(JsonFields::new())
                    .event_format(FlatJson),
            )
            .init(),
    }
}

/// Longest field kept in a log line; the rest is cut, and the cut said.
pub const MAX_FIELD_CHARS: usize = 2048;

/// A field as text lines show it: `message` bare, others `name=value`.
fn text_field(writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    let value = format!("{value:?}");
    let value = clean(&value);
    match field.name() {
        "message" => writer.write_str(&value),
        name => write!(writer, "{name}={value}"),
    }
}

/// `text` with control characters escaped and cut to [`MAX_FIELD_CHARS`].
pub fn clean(text: &str) -> Cow<'_, str> {
    let long = text.len() > MAX_FIELD_CHARS;
    if !long && !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(MAX_FIELD_CHARS + 32));
    for (i, c) in text.char_indices() {
        if out.len() >= MAX_FIELD_CHARS {
            out.push_str(&format!("…[{} more bytes cut]", text.len() - i));
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A string cut to [`MAX_FIELD_CHARS`] (JSON escapes the rest itself).
fn cut(text: String) -> Value {
    if text.len() <= MAX_FIELD_CHARS {
        return text.into();
    }
    let mut end = MAX_FIELD_CHARS;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} more bytes cut]", &text[..end], text.len() - end).into()
}

/// One JSON object per event, span fields flattened in (inner spans win).
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "time".into(),
            crate::store::Timestamp::now().to_rfc3339().into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields)
                {
                    line.extend(fields.into_iter().map(|(k, v)| match v {
                        Value::String(s) => (k, cut(s)),
                        v => (k, v),
                    }));
                }
            }
        }
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields into the line's object.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), cut(value.to_string()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` (format arguments) and `%display` fields come through here.
        self.0
            .insert(field.name().into(), cut(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_forge_lines_or_flood_them() {
        assert_eq!(clean("plain"), "plain");
        assert_eq!(
            clean("key\n2026-11-29 INFO forged\r\u{1b}[31m"),
            "key\\n2026-11-29 INFO forged\\r\\u{1b}[31m"
        );
        let long = "é".repeat(10_000);
        let cleaned = clean(&long);
        assert!(cleaned.len() < MAX_FIELD_CHARS + 64, "{}", cleaned.len());
        assert!(cleaned.ends_with("more bytes cut]"), "{cleaned}");
        let Value::String(cut) = cut(long) else {
            panic!("not a string")
        };
        assert!(cut.len() < MAX_FIELD_CHARS + 64 && cut.ends_with("more bytes cut]"));
    }

    #[test]
    fn the_format_is_named_or_refused() {
        assert_eq!(LogFormat::from_env_value(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::from_env_value(Some("json")), Ok(LogFormat::Json));
        let e = LogFormat::from_env_value(Some("xml")).unwrap_err();
        assert!(
            e.contains("PORTICO_LOG_FORMAT") && e.contains("json"),
            "{e}"
        );
    }
}
