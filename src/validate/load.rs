//! Reading YAML from files and directories: recursive, multi-document, non-YAML files skipped,
//! malformed YAML reported with file and line (never a panic).

use super::{Problem, Severity};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One YAML document read from a file.
#[derive(Clone, Debug)]
pub struct Document {
    /// The file it came from, as the user named it.
    pub file: String,
    /// The document's position in the file, from 1.
    pub index: usize,
    /// The document as JSON.
    pub value: serde_json::Value,
}

/// File that lists, one name per line, the entries of its directory to skip while walking it
/// (like `.helmignore`). `examples/` uses it so that `examples/invalid/` is only read when named.
pub const IGNORE_FILE: &str = ".servicehubignore";

/// Read every YAML document under `paths`. Directories are walked recursively in name order,
/// skipping hidden entries and those listed in a [`IGNORE_FILE`]; files not ending in `.yaml`,
/// `.yml` or `.json` inside directories are skipped (a path named explicitly is always read).
pub fn load_paths(paths: &[PathBuf]) -> (Vec<Document>, Vec<Problem>) {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let mut files = Vec::new();
        if let Err(e) = collect(path, true, &mut files) {
            problems.push(Problem::file(path.display().to_string(), format!("cannot read: {e}")));
            continue;
        }
        for file in files {
            let name = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => parse_str(&name, &text, &mut docs, &mut problems),
                Err(e) => problems.push(Problem::file(name, format!("cannot read: {e}"))),
            }
        }
    }
    (docs, problems)
}

fn collect(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let ignored = ignored_names(path);
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with('.') || ignored.iter().any(|i| i == name) {
                continue;
            }
            collect(&entry, false, out)?;
        }
    } else if explicit || is_yaml(path) {
        out.push(path.to_owned());
    }
    Ok(())
}

fn ignored_names(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(IGNORE_FILE))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn is_yaml(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// Parse a multi-document YAML string. Empty documents are skipped.
pub fn parse_str(file: &str, text: &str, docs: &mut Vec<Document>, problems: &mut Vec<Problem>) {
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match serde_yaml::Value::deserialize(de) {
            Ok(serde_yaml::Value::Null) => {}
            Ok(value) => match serde_json::to_value(&value) {
                Ok(value) => docs.push(Document { file: file.to_owned(), index: i + 1, value }),
                Err(e) => problems.push(Problem::file(file.to_owned(), format!("document {}: {e}", i + 1))),
            },
            Err(e) => {
                let at = e.location().map(|l| format!("line {}, column {}: ", l.line(), l.column()));
                problems.push(Problem {
                    file: file.to_owned(),
                    object: String::new(),
                    field: String::new(),
                    message: format!("malformed YAML: {}{e}", at.unwrap_or_default()),
                    severity: Severity::Error,
                });
                // serde_yaml cannot resume after a syntax error within the same stream.
                break;
            }
        }
    }
}
