//! Log lines on stderr for operators: text (coloured only on a terminal) or one JSON object
//! per line, each naming the local node, with levels from `[log] level` or `RUST_LOG`.

use std::fmt;
use std::io::IsTerminal;

use chainmesh::config::{LogConfig, LogFormat};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, Format, Full, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The logging options every command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Log lines as `text` or `json` (one object per line); overrides the config's
    /// `log.format`.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = parse_format)]
    log_format: Option<LogFormat>,
}

fn parse_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("`{s}` is not a log format: text or json")),
    }
}

/// Sets up logging for a command that runs without a node config: info level unless
/// `RUST_LOG` says otherwise.
pub fn init_default(args: &LogArgs) {
    init(args, &LogConfig::default(), "");
}

/// Sets up logging to stderr for node `name` (may be empty) with `config`'s levels and
/// format, `RUST_LOG` and `--log-format` winning over the config. Later calls do nothing.
pub fn init(args: &LogArgs, config: &LogConfig, name: &str) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    // The config's filter was validated when it was loaded; RUST_LOG was not, so a bad one
    // falls back to the config, and says so once logging works.
    let (filter, bad_env) = match from_env.as_deref().map(EnvFilter::try_new) {
        Some(Ok(f)) => (f, None),
        Some(Err(e)) => (config_filter(config), Some(e)),
        None => (config_filter(config), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let node = name.to_owned();
    let installed = match args.log_format.unwrap_or(config.format) {
        LogFormat::Text => {
            // Colour codes belong on a terminal only: in a file or a pipe they are noise.
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder
                .with_ansi(ansi)
                .event_format(TextLine {
                    node,
                    inner: format::format().without_time(),
                })
                .try_init()
        }
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(JsonFields)
            .event_format(JsonLine { node })
            .try_init(),
    };
    if let (Ok(()), Some(e)) = (installed, bad_env) {
        tracing::warn!(error = %e, "RUST_LOG does not parse; using log.level from the config");
    }
}

fn config_filter(config: &LogConfig) -> EnvFilter {
    EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// A text line: time, node name, then tracing's own layout (level, spans, target, fields).
struct TextLine {
    node: String,
    inner: Format<Full, ()>,
}

impl<S, N> FormatEvent<S, N> for TextLine
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
        SystemTime.format_time(&mut writer)?;
        if !self.node.is_empty() {
            write!(writer, " {}", self.node)?;
        }
        write!(writer, " ")?;
        self.inner.format_event(ctx, writer, event)
    }
}

/// A JSON line: `timestamp`, `level`, `target`, `node`, `spans` (the names of the spans the
/// event is in, outermost first), and the spans' and the event's fields, `message` among
/// them, flat in one object so that a collector can filter on `peer` whatever span set it.
struct JsonLine {
    node: String,
}

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        if let Some(scope) = ctx.event_scope() {
            let mut spans = Vec::new();
            for span in scope.from_root() {
                spans.push(Value::from(span.name()));
                let ext = span.extensions();
                let fields = ext
                    .get::<FormattedFields<JsonFields>>()
                    .and_then(|f| serde_json::from_str::<Map<String, Value>>(f).ok());
                line.extend(fields.into_iter().flatten());
            }
            line.insert("spans".into(), spans.into());
        }
        event.record(&mut JsonVisitor(&mut line));
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let meta = event.metadata();
        let mut own = vec![
            ("timestamp", Value::from(time)),
            ("level", meta.level().as_str().into()),
            ("target", meta.target().into()),
        ];
        if !self.node.is_empty() {
            own.push(("node", self.node.clone().into()));
        }
        // The line's own keys win; a field of the same name (some events name a node `node`)
        // is kept beside them as `field.NAME`.
        for (key, value) in own {
            if let Some(field) = line.insert(key.into(), value) {
                line.insert(format!("field.{key}"), field);
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Keeps a span's fields as a JSON object, so that [`JsonLine`] can put them on its lines as
/// values rather than as one string.
struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut map = Map::new();
        fields.record(&mut JsonVisitor(&mut map));
        let text = serde_json::to_string(&map).map_err(|_| fmt::Error)?;
        write!(writer, "{text}")
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut map: Map<String, Value> = serde_json::from_str(current).unwrap_or_default();
        fields.record(&mut JsonVisitor(&mut map));
        let text = serde_json::to_string(&map).map_err(|_| fmt::Error)?;
        current.fields = text;
        Ok(())
    }
}

/// Records fields into a JSON object: numbers and booleans as such, everything else as its
/// text (`%` fields as Display, `?` fields as Debug).
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
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

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_format_flag_takes_text_or_json_only() {
        assert_eq!(parse_format("json"), Ok(LogFormat::Json));
        assert_eq!(parse_format("text"), Ok(LogFormat::Text));
        assert!(parse_format("xml").is_err());
    }
}
