//! Logging setup, done once at start, and [`escape_for_log`] for values a caller
//! controls. Patient identifiers, tokens and resource contents are never logged
//! at info level. It owns its settings (`[log]`) and imports nothing else of
//! the crate, so every module may use it.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `cramp_cds=debug`; `RUST_LOG` wins when set.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides the configured level.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second initialisation (as in tests) keeps the first subscriber.
    let _ = result;
}

/// The most characters of one value [`escape_for_log`] keeps; a longer value is cut there and
/// ends with `…`.
pub const LOG_VALUE_MAX_CHARS: usize = 256;

/// `value` made safe for a text log line, for any value a caller controls (a token's header or
/// issuer, a key server's answer): every control character (`char::is_control`: newline,
/// carriage return, ESC, the C1 set...) and every Unicode line separator or bidirectional
/// override is written as an escape (`\n`, `\r`, `\u{1b}`, `\u{202e}`), a backslash is doubled
/// so an escape cannot be faked, and the result is cut after [`LOG_VALUE_MAX_CHARS`]
/// characters. A log line can then neither be split, forged nor recoloured, nor made huge.
/// Not for structured (JSON) output, which has its own escaping.
pub fn escape_for_log(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len().min(LOG_VALUE_MAX_CHARS) + 8);
    for (index, c) in value.chars().enumerate() {
        if index == LOG_VALUE_MAX_CHARS {
            escaped.push('…');
            break;
        }
        let unsafe_in_a_line = c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if unsafe_in_a_line || c == '\\' {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_for_log_escapes_control_characters_and_cuts_long_values() {
        let forged = "kid\n2026-11-01 INFO \x1b[31mforged\x1b[0m\r\u{85}\u{2028}\u{202e}\\n";
        let escaped = escape_for_log(forged);
        assert_eq!(
            escaped,
            r"kid\n2026-11-01 INFO \u{1b}[31mforged\u{1b}[0m\r\u{85}\u{2028}\u{202e}\\n"
        );
        assert!(!escaped.chars().any(char::is_control));
        assert_eq!(
            escape_for_log("https://ehr.example/é"),
            "https://ehr.example/é"
        );

        let long = "a".repeat(10 * LOG_VALUE_MAX_CHARS);
        let cut = escape_for_log(&long);
        assert_eq!(cut.chars().count(), LOG_VALUE_MAX_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(
            escape_for_log(&long[..LOG_VALUE_MAX_CHARS]),
            &long[..LOG_VALUE_MAX_CHARS]
        );
    }
}
