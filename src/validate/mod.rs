//! `servicehub validate`: is this YAML right, before anything touches a cluster or a store?
//!
//! Pipeline per object: load (YAML, file and line on error) -> schema (types, enums, unknown
//! fields, defaults) -> CEL rules (the same `x-kubernetes-validations` the API server runs)
//! -> typed decode -> domain rules. Then the rules between objects of the set: references,
//! one default workspace and one LockboxPolicy per customer, personal accounts, duplicates.

pub mod load;
mod matches;
mod refs;
pub mod schema;

use crate::api::{self, Customer, LockboxPolicy, Membership, Workspace};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

pub use load::Document;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Accepted, but the user should look (a deprecated permission).
    Warning,
    /// Rejected.
    Error,
}

/// One problem, printed as `FILE: KIND/NAME: FIELD: MESSAGE`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The file the object came from.
    pub file: String,
    /// `Kind/name`, or empty when the problem is with the file itself.
    pub object: String,
    /// The field path, e.g. `spec.agreement.endDate`, or empty.
    pub field: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl Problem {
    fn file(file: String, message: String) -> Problem {
        Problem { file, object: String::new(), field: String::new(), message, severity: Severity::Error }
    }

    /// Whether a file or directory could not be read at all (missing, unreadable, too
    /// large, not text): a run with such input does nothing else.
    pub fn is_unreadable(&self) -> bool {
        self.object.is_empty() && self.message.starts_with("cannot read")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.file)?;
        if !self.object.is_empty() {
            write!(f, " {}:", self.object)?;
        }
        if !self.field.is_empty() {
            write!(f, " {}:", self.field)?;
        }
        if self.severity == Severity::Warning {
            write!(f, " warning:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// `s` as echoed in a message: at most 100 characters, so a megabyte-long name or value is
/// not printed in full in every message that names it.
pub(crate) fn shown(s: &str) -> String {
    cut(s, 100)
}

/// `s` cut to its first `max` characters, saying how long it was.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}… ({} characters)", &s[..at], s.chars().count()),
    }
}

/// A decoded object of one of the four kinds.
#[derive(Clone, Debug)]
pub enum Object {
    /// A Customer.
    Customer(Box<Customer>),
    /// A Workspace.
    Workspace(Box<Workspace>),
    /// A Membership.
    Membership(Box<Membership>),
    /// A LockboxPolicy.
    LockboxPolicy(Box<LockboxPolicy>),
}

impl Object {
    /// The kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Customer(_) => "Customer",
            Object::Workspace(_) => "Workspace",
            Object::Membership(_) => "Membership",
            Object::LockboxPolicy(_) => "LockboxPolicy",
        }
    }

    /// Position in dependency order: customers first, then workspaces, memberships, policies.
    pub fn order(&self) -> usize {
        api::KINDS.iter().position(|k| *k == self.kind()).unwrap_or(usize::MAX)
    }

    /// The object's metadata.
    pub fn meta(&self) -> &kube::api::ObjectMeta {
        match self {
            Object::Customer(o) => &o.metadata,
            Object::Workspace(o) => &o.metadata,
            Object::Membership(o) => &o.metadata,
            Object::LockboxPolicy(o) => &o.metadata,
        }
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// The Customer the object belongs to: its own name for a Customer, else `customerRef`.
    pub fn customer(&self) -> &str {
        match self {
            Object::Customer(c) => c.metadata.name.as_deref().unwrap_or_default(),
            Object::Workspace(w) => &w.spec.customer_ref.name,
            Object::Membership(m) => &m.spec.customer_ref.name,
            Object::LockboxPolicy(p) => &p.spec.customer_ref.name,
        }
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        self.meta().namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// The namespace of an object that names none, as `kubectl` would assume.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A valid object and where it came from.
#[derive(Clone, Debug)]
pub struct Sourced {
    /// The file it came from.
    pub file: String,
    /// The object, with schema defaults applied and `metadata.namespace` set.
    pub object: Object,
}

/// What validation found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Objects without errors, in dependency order (customers first).
    pub objects: Vec<Sourced>,
    /// Every problem, errors and warnings, in the order found.
    pub problems: Vec<Problem>,
    /// How many servicehub.io objects were read.
    pub checked: usize,
    /// How many objects of other API groups were skipped.
    pub ignored: usize,
}

impl Report {
    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// Whether references to objects outside the set are errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum References {
    /// `validate`: every Customer and Workspace referred to must be in the set.
    InSet,
    /// `apply`: a reference may name an object the store already holds; the engine checks it.
    MayBeInStore,
}

/// Read and validate everything under `paths`.
///
/// Many files are read, parsed and checked a slice of files per thread, so the parsed
/// documents of only a few files are held at once (10,000 Memberships in 101 files:
/// `validate` peaked at 80 MB holding them all) and parsing is spread over the cores too.
/// Fewer files (one large one, say) are read first and their documents split over the
/// threads. Either way the report is the one a single pass gives: the problems reading
/// and parsing found, in file order, then those checking found.
pub fn validate_paths(paths: &[PathBuf], references: References) -> Report {
    let (files, problems) = load::files_under(paths);
    if files.len() < PARALLEL_FROM_FILES.max(2 * cores()) {
        let (docs, problems) = load::load_files(&files, problems);
        return validate_parsed(docs, problems, references);
    }
    validate_files(files, references, cores(), problems)
}

/// Files read, parsed and checked a slice per thread.
fn validate_files(files: Vec<PathBuf>, references: References, threads: usize, problems: Vec<Problem>) -> Report {
    validate_units(files, references, threads, problems, |file, docs, problems| load::load_file(&file, docs, problems))
}

/// Below this many documents, checking them on one thread is quicker than starting more.
const PARALLEL_FROM: usize = 512;
/// Below this many files, they are read on one thread (and their documents checked as
/// [`PARALLEL_FROM`] says).
const PARALLEL_FROM_FILES: usize = 32;
/// Threads that check documents at most.
const MAX_THREADS: usize = 8;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS)
}

/// Validate already-parsed documents.
pub fn validate_documents(docs: Vec<Document>, references: References) -> Report {
    validate_parsed(docs, Vec::new(), references)
}

/// Validate parsed documents after the `problems` reading them found; each document is
/// checked on its own, so large sets are split over the cores.
fn validate_parsed(docs: Vec<Document>, problems: Vec<Problem>, references: References) -> Report {
    let threads = if docs.len() < PARALLEL_FROM { 1 } else { cores() };
    validate_units(docs, references, threads, problems, |doc, docs, _| docs.push(doc))
}

/// Validate the documents `read` gives for each unit (a document, or a file), over `threads`
/// threads in contiguous slices of units merged back in order: the report reads as from one
/// pass, whatever the number of threads. `problems` (of reading) come first, then those
/// `read` reports, then those checking finds.
fn validate_units<T: Send>(
    units: Vec<T>,
    references: References,
    threads: usize,
    mut problems: Vec<Problem>,
    read: impl Fn(T, &mut Vec<Document>, &mut Vec<Problem>) + Sync,
) -> Report {
    let schemas: HashMap<&str, Schema> = api::crds()
        .into_iter()
        .filter_map(|crd| {
            let kind = api::KINDS.into_iter().find(|k| *k == crd.spec.names.kind)?;
            let schema = crd.spec.versions.first()?.schema.as_ref()?.open_api_v3_schema.as_ref()?;
            let schema = serde_json::to_value(schema).ok()?;
            // Compile each kind's CEL rules once, not once per object.
            let compiled = kube::core::cel::compile_schema(&matches::without_literal_rules(&schema));
            let literal = matches::Rules::of(&schema);
            Some((kind, Schema { schema, compiled, literal }))
        })
        .collect();
    let per = units.len().div_ceil(threads.max(1)).max(1);
    let mut slices: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut units = units.into_iter();
    loop {
        let slice: Vec<T> = units.by_ref().take(per).collect();
        if slice.is_empty() {
            break;
        }
        slices.push(slice);
    }
    let check_slice = |slice: Vec<T>| {
        // One interpreter per thread: making one registers every CEL function again.
        let cel = kube::core::cel::Validator::new();
        let mut report = Report::default();
        let mut read_problems = Vec::new();
        let mut decoded: Vec<(Sourced, bool)> = Vec::new();
        let mut docs = Vec::new();
        for unit in slice {
            read(unit, &mut docs, &mut read_problems);
            for doc in docs.drain(..) {
                if let Some(checked) = check_document(doc, &schemas, &cel, &mut report) {
                    decoded.push(checked);
                }
            }
        }
        (read_problems, report, decoded)
    };
    let parts: Vec<Part> = if slices.len() <= 1 {
        slices.into_iter().map(check_slice).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = slices.into_iter().map(|slice| scope.spawn(|| check_slice(slice))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        })
    };
    let mut report = Report::default();
    let mut decoded: Vec<(Sourced, bool)> = Vec::new();
    let mut checking = Vec::new();
    for (mut read_problems, part, mut objects) in parts {
        problems.append(&mut read_problems);
        checking.extend(part.problems);
        report.checked += part.checked;
        report.ignored += part.ignored;
        decoded.append(&mut objects);
    }
    problems.append(&mut checking);
    report.problems = problems;
    let bad = refs::check(&decoded, references, &mut report.problems);
    let mut objects: Vec<Sourced> = decoded
        .into_iter()
        .enumerate()
        .filter(|(i, (_, clean))| *clean && !bad.contains(i))
        .map(|(_, (s, _))| s)
        .collect();
    objects.sort_by_key(|s| s.object.order());
    report.objects = objects;
    report
}

/// What one thread found: the problems of reading, the report of checking, and the objects
/// decoded (with whether each was clean).
type Part = (Vec<Problem>, Report, Vec<(Sourced, bool)>);

/// One kind's schema, ready to check objects against.
struct Schema {
    /// The `openAPIV3Schema`, for the structural checks.
    schema: Value,
    /// Its CEL rules, compiled, but for the literal `matches` ones...
    compiled: kube::core::cel::CompiledSchema,
    /// ...which are checked with their regex compiled once.
    literal: matches::Rules,
}

/// Check one document on its own. Returns the decoded object (if it decoded) and whether it
/// had no errors.
fn check_document(
    doc: Document,
    schemas: &HashMap<&str, Schema>,
    cel: &kube::core::cel::Validator,
    report: &mut Report,
) -> Option<(Sourced, bool)> {
    let Document { file, index, mut value } = doc;
    let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("<unnamed>").to_owned();
    let label =
        if kind.is_empty() { format!("document {index}") } else { format!("{}/{}", shown(&kind), shown(&name)) };
    let problem = |field: &str, message: String, severity: Severity| Problem {
        file: file.clone(),
        object: label.clone(),
        field: field.to_owned(),
        message: cut(&message, 400),
        severity,
    };
    let group = api_version.split('/').next().unwrap_or_default();
    // A near miss of this API group (`SERVICEHUB.IO`, `servicehub.io.` or `servicehub.com`)
    // is a typo that would silently drop the object: refuse it.
    if group != api::GROUP && group.to_ascii_lowercase().contains("servicehub") {
        let msg = format!("unknown API group {:?}: did you mean apiVersion: {}?", shown(group), api::API_VERSION);
        report.checked += 1;
        report.problems.push(problem("apiVersion", msg, Severity::Error));
        return None;
    }
    if group != api::GROUP {
        if api_version.is_empty() || kind.is_empty() {
            let msg = "not a Kubernetes object: apiVersion and kind are required".to_owned();
            report.problems.push(problem("", msg, Severity::Error));
        } else {
            // Namespaces, kustomizations and the like sit beside our objects; they are not ours to check.
            report.ignored += 1;
        }
        return None;
    }
    report.checked += 1;
    if kind.is_empty() {
        report.problems.push(problem("kind", "Required value".to_owned(), Severity::Error));
        return None;
    }
    let Some(Schema { schema, compiled, literal }) = schemas.get(kind.as_str()) else {
        let msg = format!("unknown kind {kind:?}: servicehub.io kinds are {}", api::KINDS.join(", "));
        report.problems.push(problem("kind", msg, Severity::Error));
        return None;
    };
    if api_version != api::API_VERSION {
        let msg = format!("unsupported apiVersion {api_version:?}: use {}", api::API_VERSION);
        report.problems.push(problem("apiVersion", msg, Severity::Error));
        return None;
    }
    let schema_errors = schema::check_object(schema, &mut value);
    if !schema_errors.is_empty() {
        for e in schema_errors {
            report.problems.push(problem(&e.field, e.message, Severity::Error));
        }
        return None;
    }
    // The grantability rule's message is generic (CEL cannot name the permission); the
    // domain check below says which permission and which role would give it, so a failure of
    // that rule alone defers to it.
    let mut not_grantable = false;
    let mut errors: Vec<matches::Failure> = literal.check(&value);
    if let Err(e) = cel.validate_compiled(compiled, &value, None) {
        errors.extend(
            e.into_vec().into_iter().map(|e| matches::Failure { field: cel_field(&e.field_path), message: e.message }),
        );
    }
    if !errors.is_empty() {
        if !errors.iter().all(|e| e.message == api::membership::PERMISSION_GRANTABLE_MESSAGE) {
            for e in errors {
                report.problems.push(problem(&e.field, e.message, Severity::Error));
            }
            return None;
        }
        not_grantable = true;
    }
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.entry("namespace").or_insert_with(|| Value::String(DEFAULT_NAMESPACE.into()));
    }
    let object = match decode(&kind, value) {
        Ok(o) => o,
        Err(e) => {
            report.problems.push(problem("", format!("cannot decode: {e}"), Severity::Error));
            return None;
        }
    };
    let before = report.problems.len();
    refs::check_alone(&object, &mut |field, message, severity| report.problems.push(problem(field, message, severity)));
    let explained = report.problems[before..].iter().any(|p| p.field.starts_with("spec.permissions"));
    if not_grantable && !explained {
        // The domain check and the CRD rule disagree (a test keeps them equal): the API
        // server would refuse it, so refuse it here too.
        let message = api::membership::PERMISSION_GRANTABLE_MESSAGE.to_owned();
        report.problems.push(problem("spec.permissions", message, Severity::Error));
    }
    let clean = !report.problems[before..].iter().any(|p| p.severity == Severity::Error);
    Some((Sourced { file, object }, clean))
}

fn decode(kind: &str, value: Value) -> Result<Object, serde_json::Error> {
    Ok(match kind {
        "Customer" => Object::Customer(Box::new(serde_json::from_value(value)?)),
        "Workspace" => Object::Workspace(Box::new(serde_json::from_value(value)?)),
        "Membership" => Object::Membership(Box::new(serde_json::from_value(value)?)),
        _ => Object::LockboxPolicy(Box::new(serde_json::from_value(value)?)),
    })
}

/// kube-cel reports paths like `spec.agreement` or `.spec.x`; print them like the schema paths.
fn cel_field(path: &str) -> String {
    path.trim_start_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`validate_documents`] over `threads` threads.
    fn validate_on(docs: Vec<Document>, references: References, threads: usize) -> Report {
        validate_units(docs, references, threads, Vec::new(), |doc, docs, _| docs.push(doc))
    }

    /// Every example, valid and invalid, many times over: a mix of clean objects, schema
    /// errors, CEL errors, literal-rule errors and reference errors.
    fn mixed(copies: usize) -> Vec<Document> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("invalid"))
            .expect("examples/invalid")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files.insert(0, root.clone());
        let (docs, _) = load::load_paths(&files);
        let mut out = Vec::new();
        for copy in 0..copies {
            out.extend(docs.iter().cloned().map(|d| Document { file: format!("{copy}/{}", d.file), ..d }));
        }
        out
    }

    #[test]
    fn files_read_on_many_threads_give_the_report_of_one_pass() {
        // The examples, valid and invalid (one malformed), copied into six directories.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let tmp = tempfile::tempdir().expect("tempdir");
        for copy in 0..6 {
            let dir = tmp.path().join(format!("copy{copy}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            for from in [root.clone(), root.join("invalid")] {
                for entry in std::fs::read_dir(&from).expect("read_dir") {
                    let path = entry.expect("entry").path();
                    if path.is_file() {
                        let name = format!(
                            "{}-{}",
                            from.file_name().and_then(|n| n.to_str()).unwrap_or("x"),
                            path.file_name().and_then(|n| n.to_str()).expect("name")
                        );
                        std::fs::copy(&path, dir.join(name)).expect("copy");
                    }
                }
            }
            std::fs::write(dir.join("zz-broken.yaml"), "a:\n\tb: c\n").expect("write");
        }
        let paths = [tmp.path().to_path_buf(), tmp.path().join("missing")];
        let (docs, problems) = load::load_paths(&paths);
        let mut expected = validate_on(docs, References::InSet, 1);
        expected.problems = problems.into_iter().chain(expected.problems).collect();
        assert!(expected.problems.iter().any(|p| p.message.contains("malformed YAML")));
        assert!(expected.problems.iter().any(|p| p.message.contains("cannot read")));
        for threads in [1, 2, 5] {
            let (files, problems) = load::files_under(&paths);
            let got = validate_files(files, References::InSet, threads, problems);
            assert_eq!(got.problems, expected.problems, "{threads} threads");
            assert_eq!((got.checked, got.ignored), (expected.checked, expected.ignored));
            let names =
                |r: &Report| r.objects.iter().map(|o| format!("{}:{}", o.file, o.object.name())).collect::<Vec<_>>();
            assert_eq!(names(&got), names(&expected), "{threads} threads");
        }
    }

    #[test]
    fn the_report_is_the_same_on_one_thread_and_on_many() {
        let docs = mixed(20);
        assert!(docs.len() > PARALLEL_FROM, "{} documents", docs.len());
        let one = validate_on(docs.clone(), References::InSet, 1);
        assert!(one.problems.len() > 100 && !one.objects.is_empty(), "{} problems", one.problems.len());
        for threads in [2, 3, 8] {
            let many = validate_on(docs.clone(), References::InSet, threads);
            assert_eq!(many.problems, one.problems, "{threads} threads");
            assert_eq!((many.checked, many.ignored), (one.checked, one.ignored));
            let names =
                |r: &Report| r.objects.iter().map(|o| format!("{}:{}", o.file, o.object.name())).collect::<Vec<_>>();
            assert_eq!(names(&many), names(&one), "{threads} threads");
        }
    }
}
