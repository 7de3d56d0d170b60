//! One output convention for every command, as kubectl users expect it: aligned tables for
//! people (long cells cut to fit about 120 columns; `-o wide` shows them whole), and for
//! scripts a JSON document (`-o json`), JSON lines (`-o jsonl`, one object per line, for
//! streams and `jq -c`) or YAML (`-o yaml`). Keys are camelCase, JSON kept in a column is
//! nested as JSON, and times are RFC 3339 UTC, in every format.

use clap::ValueEnum;
use serde::Serialize;
use std::io::Write;

/// Output formats.
#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for a terminal, long cells cut to fit.
    #[default]
    Table,
    /// The table with every cell whole (and, where a command has them, more columns).
    Wide,
    /// One JSON document.
    Json,
    /// JSON lines: one compact JSON object per line.
    Jsonl,
    /// YAML.
    Yaml,
}

impl OutputFormat {
    /// Whether the output is for people (a table), not a document for scripts.
    pub fn is_table(self) -> bool {
        matches!(self, OutputFormat::Table | OutputFormat::Wide)
    }
}

/// Write `items` as a document in `format`; `false` (nothing written) for the table formats,
/// which the caller renders.
pub fn list<T: Serialize>(out: &mut impl Write, format: OutputFormat, items: &[T]) -> anyhow::Result<bool> {
    match format {
        OutputFormat::Table | OutputFormat::Wide => return Ok(false),
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(items)?)?,
        OutputFormat::Jsonl => {
            for item in items {
                writeln!(out, "{}", serde_json::to_string(item)?)?;
            }
        }
        OutputFormat::Yaml => write!(out, "{}", serde_yaml::to_string(items)?)?,
    }
    Ok(true)
}

/// Write one object as a document in `format` (a single line for `jsonl`); `false` for the
/// table formats.
pub fn one<T: Serialize>(out: &mut impl Write, format: OutputFormat, item: &T) -> anyhow::Result<bool> {
    match format {
        OutputFormat::Table | OutputFormat::Wide => return Ok(false),
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(item)?)?,
        OutputFormat::Jsonl => writeln!(out, "{}", serde_json::to_string(item)?)?,
        OutputFormat::Yaml => write!(out, "{}", serde_yaml::to_string(item)?)?,
    }
    Ok(true)
}
