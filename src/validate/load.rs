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
    let (files, problems) = files_under(paths);
    load_files(&files, problems)
}

/// Read and parse `files` in order, after the `problems` found so far.
pub fn load_files(files: &[PathBuf], mut problems: Vec<Problem>) -> (Vec<Document>, Vec<Problem>) {
    let mut docs = Vec::new();
    for file in files {
        load_file(file, &mut docs, &mut problems);
    }
    (docs, problems)
}

/// The files [`load_paths`] reads under `paths`, in its order, and the paths it cannot read.
pub fn files_under(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Problem>) {
    let mut all = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let mut files = Vec::new();
        match collect(path, true, &mut files) {
            Ok(()) => all.append(&mut files),
            Err(e) => problems.push(Problem::file(path.display().to_string(), format!("cannot read: {e}"))),
        }
    }
    (all, problems)
}

/// Read and parse one file's documents.
pub fn load_file(file: &Path, docs: &mut Vec<Document>, problems: &mut Vec<Problem>) {
    let name = file.display().to_string();
    match read_bounded(file) {
        Ok(text) => parse_str(&name, &text, docs, problems),
        Err(e) => problems.push(Problem::file(name, e)),
    }
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

/// The largest file read: far above any real set of objects (10,000 Memberships take about
/// 3 MB), low enough that one file cannot exhaust memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The largest YAML document: the API server's request size limit, so nothing bigger could
/// be applied to a cluster either.
pub const MAX_DOCUMENT_BYTES: usize = 3 * 1024 * 1024;
/// The deepest nesting of flow collections (`[`, `{`): the YAML parser takes quadratic time
/// in it (100,000 levels, 500 KB, took over 20 s). Real objects nest a handful of levels.
pub const MAX_FLOW_DEPTH: usize = 64;

fn read_bounded(file: &Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(file).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("cannot read: file larger than {} MiB: split it into several files", MAX_FILE_BYTES >> 20));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "cannot read: not UTF-8 text (invalid byte at offset {}): YAML files must be UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Refuse a document that would make the YAML parser slow before handing it over: larger
/// than [`MAX_DOCUMENT_BYTES`], or with flow collections nested deeper than
/// [`MAX_FLOW_DEPTH`]. Linear in the text; quoted scalars and comments are skipped. Lines
/// are counted from `first_line`, the document's line in its file; `index` is its number.
fn precheck(doc: &str, first_line: usize, index: usize) -> Result<(), String> {
    if doc.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("document {index} is larger than {} MiB", MAX_DOCUMENT_BYTES >> 20));
    }
    let mut depth = 0usize;
    let (mut line, mut col) = (first_line, 0usize);
    let bytes = doc.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        col += 1;
        match b {
            b'\n' => {
                line += 1;
                col = 0;
            }
            b'#' if i == 0 || bytes[i - 1].is_ascii_whitespace() => {
                while i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' => {
                // Skip the quoted scalar ("\"" escapes in double quotes, '' in single quotes).
                let quote = b;
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if quote == b'"' => i += 1,
                        b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 1,
                        c if c == quote => break,
                        b'\n' => {
                            line += 1;
                            col = 0;
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(format!(
                        "line {line}, column {col}: collections nested deeper than {MAX_FLOW_DEPTH} levels"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Parse a multi-document YAML string. Empty documents are skipped. Each document is checked
/// and parsed on its own, so a malformed or oversized one is reported (with the object it
/// seems to be, and its line in the file) and the documents after it are still checked.
pub fn parse_str(file: &str, text: &str, docs: &mut Vec<Document>, problems: &mut Vec<Problem>) {
    // A UTF-8 byte-order mark (some Windows editors write one) is not part of the YAML.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut index = 0;
    for (first_line, piece) in split_documents(text) {
        let problem = |index: usize, field: String, message: String| Problem {
            file: file.to_owned(),
            object: object_hint(piece).unwrap_or_else(|| format!("document {index}")),
            field,
            message,
            severity: Severity::Error,
        };
        if let Err(e) = precheck(piece, first_line, index + 1) {
            index += 1;
            problems.push(Problem::file(file.to_owned(), format!("refused before parsing: {e}")));
            continue;
        }
        for de in serde_yaml::Deserializer::from_str(piece) {
            index += 1;
            let value = match serde_yaml::Value::deserialize(de) {
                Ok(v) => v,
                Err(e) => {
                    let at = e
                        .location()
                        .map(|l| format!("line {}, column {}: ", l.line() + first_line - 1, l.column()))
                        .unwrap_or_default();
                    let message = e.to_string();
                    // serde_yaml appends its own (piece-relative) position: the file's is in front.
                    let message = message.split(" at line ").next().unwrap_or(&message);
                    let message = if message.contains(" as u128") || message.contains(" as i128") {
                        format!(
                            "{}: a number wider than 64 bits; quote it if it is text",
                            message.split(':').next().unwrap_or(message)
                        )
                    } else {
                        message.to_owned()
                    };
                    problems.push(problem(index, String::new(), format!("malformed YAML: {at}{message}")));
                    // The rest of this document cannot be read; the next one can.
                    break;
                }
            };
            if value.is_null() {
                continue;
            }
            match to_json(&value, &mut Vec::new()) {
                Ok(value) => docs.push(Document { file: file.to_owned(), index, value }),
                Err((field, message)) => problems.push(problem(index, field, message)),
            }
        }
    }
}

/// The documents of a YAML stream with the line each starts on: it is split at `---`
/// markers, which the YAML spec allows only at the start of a line (and never inside a
/// scalar), so each document can be parsed, and fail, on its own.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let (mut start, mut start_line, mut line, mut at) = (0, 1, 1, 0);
    for l in text.split_inclusive('\n') {
        let marker = l.strip_prefix("---").is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        if marker && at > start {
            out.push((start_line, &text[start..at]));
            start = at;
            start_line = line;
        }
        at += l.len();
        line += 1;
    }
    out.push((start_line, &text[start..]));
    out
}

/// `Kind/name` of a document that could not be parsed, read from its top-level `kind:` and
/// `metadata.name:` lines where it has them.
fn object_hint(piece: &str) -> Option<String> {
    let value = |l: &str, key: &str| -> Option<String> {
        let v = l.strip_prefix(key)?.trim();
        let v = v.split(" #").next().unwrap_or(v).trim().trim_matches(['"', '\'']);
        (!v.is_empty()).then(|| super::shown(v))
    };
    let kind = piece.lines().find_map(|l| value(l, "kind:"))?;
    let mut in_meta = false;
    let mut name = None;
    for l in piece.lines() {
        if l.starts_with("metadata:") {
            in_meta = true;
        } else if in_meta && !l.starts_with(' ') && !l.trim().is_empty() {
            in_meta = false;
        } else if in_meta && let Some(v) = value(l.trim_start(), "name:") {
            name = Some(v);
            break;
        }
    }
    Some(format!("{kind}/{}", name.unwrap_or_else(|| "<unnamed>".into())))
}

/// One step of the path to a value: a mapping key or a list index.
enum Step<'a> {
    Key(std::borrow::Cow<'a, str>),
    Index(usize),
}

/// The field path of `steps` as messages write it: `spec.subscribers[2]`.
fn dotted(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// YAML to JSON as the API server's YAML reader does it (number and boolean keys become
/// strings), refusing what JSON cannot hold with the field it is in: infinities and NaN
/// (`.inf`, `.nan`; serde would turn them into null) and keys that are null, lists or maps.
/// The path is kept as steps and only written out for an error: this runs on every value
/// of every document an `apply` reads.
fn to_json<'a>(v: &'a serde_yaml::Value, path: &mut Vec<Step<'a>>) -> Result<serde_json::Value, (String, String)> {
    use serde_json::Value as J;
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(*b),
        Y::String(s) => J::String(s.clone()),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match serde_json::Number::from_f64(f) {
                    Some(n) => J::Number(n),
                    None => {
                        let msg = format!("{n} (infinity or not-a-number) is not a JSON value; quote it if it is text");
                        return Err((dotted(path), msg));
                    }
                }
            }
        }
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                out.push(to_json(item, path)?);
                path.pop();
            }
            J::Array(out)
        }
        Y::Mapping(m) => {
            let mut out = serde_json::Map::with_capacity(m.len());
            for (k, item) in m {
                let key: std::borrow::Cow<'a, str> = match k {
                    Y::String(s) => s.as_str().into(),
                    Y::Bool(b) => b.to_string().into(),
                    Y::Number(n) => n.to_string().into(),
                    other => {
                        let what = match other {
                            Y::Null => "null",
                            Y::Sequence(_) => "a list",
                            Y::Mapping(_) => "a mapping",
                            _ => "not a string",
                        };
                        let field = dotted(path);
                        let at = if field.is_empty() { "the top level".to_owned() } else { field.clone() };
                        return Err((field, format!("a key in {at} is {what}: keys must be strings")));
                    }
                };
                path.push(Step::Key(key.clone()));
                let value = to_json(item, path)?;
                path.pop();
                out.insert(key.into_owned(), value);
            }
            J::Object(out)
        }
        Y::Tagged(t) => to_json(&t.value, path)?,
    })
}
