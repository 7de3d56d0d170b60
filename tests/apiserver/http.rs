//! The emulated API server's HTTP front: discovery, CRUD, merge patches and watches, on a
//! loopback port chosen at start. Paths and bodies follow the Kubernetes API so that kube-rs
//! (and, later, kubectl) talk to it as to kube-apiserver.

use super::registry::{ApiError, Event, EventType, FieldValidation, Kind, Part, Registry, Resource};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A running emulated API server.
pub struct ApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its objects, for tests that look behind the API.
    pub registry: Arc<Registry>,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Counts of requests the server answered, for tests that assert on API traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every request, discovery included.
    pub requests: u64,
    /// POST, PUT, PATCH and DELETE requests.
    pub writes: u64,
    /// Watch requests.
    pub watches: u64,
    /// Writes by resource: the plural, with `/status` for the status subresource
    /// (`memberships/status`, `leases`, `events`).
    pub writes_by_resource: std::collections::BTreeMap<String, u64>,
    /// Writes by object: the key of `writes_by_resource`, a space, and `namespace/name`;
    /// says which object a surplus write went to.
    pub writes_by_object: std::collections::BTreeMap<String, u64>,
    /// Every distinct request on a resource, as RBAC sees it: (verb, API group, resource
    /// with subresource, namespace). What an operator's Role must grant.
    pub calls: std::collections::BTreeSet<(String, String, String, Option<String>)>,
}

impl Stats {
    /// Writes to these resources (plural or `plural/status`).
    pub fn writes_to(&self, resources: &[&str]) -> u64 {
        resources.iter().map(|r| self.writes_by_resource.get(*r).copied().unwrap_or(0)).sum()
    }
}

/// Faults to inject.
#[derive(Default)]
struct Faults {
    /// The next this-many requests fail with this status code.
    fail_next: Option<(u32, u16)>,
    /// Delay before answering each request.
    latency: Duration,
}

/// State shared by the handlers.
struct Shared {
    registry: Arc<Registry>,
    faults: std::sync::Mutex<Faults>,
    stats: std::sync::Mutex<Stats>,
    /// Bumped to end every open watch.
    drop_watches: tokio::sync::watch::Sender<u64>,
}

/// How often a watch with `allowWatchBookmarks` receives a bookmark.
const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

impl ApiServer {
    /// Start on 127.0.0.1 with the built-in kinds and the servicehub.io CRDs registered.
    pub async fn start() -> ApiServer {
        ApiServer::start_with_history(10_000).await
    }

    /// Start, keeping only the last `history` events for watch resumption (tests of 410).
    pub async fn start_with_history(history: usize) -> ApiServer {
        let registry = Arc::new(Registry::new(history));
        let builtin = [
            ("", "v1", "namespaces", "Namespace", false, true),
            ("coordination.k8s.io", "v1", "leases", "Lease", true, false),
            ("", "v1", "events", "Event", true, false),
            ("events.k8s.io", "v1", "events", "Event", true, false),
            ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, true),
        ];
        for (group, version, plural, kind, namespaced, status) in builtin {
            let r = Resource { group: group.into(), version: version.into(), plural: plural.into() };
            let kind = Kind {
                kind: kind.into(),
                namespaced,
                status_subresource: status,
                short_names: vec![],
                categories: vec![],
            };
            registry.register(r, kind);
        }
        for crd in crds_from_disk() {
            let v = &crd.spec.versions[0];
            let r = Resource {
                group: crd.spec.group.clone(),
                version: v.name.clone(),
                plural: crd.spec.names.plural.clone(),
            };
            let status = v.subresources.as_ref().is_some_and(|s| s.status.is_some());
            if let Some(schema) = v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) {
                registry.set_schema(r.clone(), serde_json::to_value(schema).expect("schema"));
            }
            registry.register(
                r,
                Kind {
                    kind: crd.spec.names.kind.clone(),
                    namespaced: crd.spec.scope == "Namespaced",
                    status_subresource: status,
                    short_names: crd.spec.names.short_names.clone().unwrap_or_default(),
                    categories: crd.spec.names.categories.clone().unwrap_or_default(),
                },
            );
        }
        let shared = Arc::new(Shared {
            registry: registry.clone(),
            faults: Default::default(),
            stats: Default::default(),
            drop_watches: tokio::sync::watch::channel(0).0,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let mut server = ApiServer { addr, registry, shared, shutdown: None, task: None };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new().fallback(handle).with_state(self.shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        }));
        self.shutdown = Some(tx);
    }

    /// Stop and start again on the same address with the same objects, as a restarted
    /// kube-apiserver over the same etcd: open watches end, clients reconnect.
    pub async fn restart(&mut self) {
        self.drop_watches();
        self.halt().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.expect("rebind the same address");
        self.serve(listener);
    }

    /// Make the next `n` requests fail with HTTP `code` (500, 503, 429, ...).
    pub fn fail_next(&self, n: u32, code: u16) {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()).fail_next = Some((n, code));
    }

    /// Delay every answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()).latency = latency;
    }

    /// End every open watch now (clients must watch again, or list).
    pub fn drop_watches(&self) {
        self.shared.drop_watches.send_modify(|n| *n += 1);
    }

    /// Requests answered so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for it (plain HTTP on loopback, no credentials).
    pub fn kubeconfig(&self) -> String {
        kubeconfig_for(&self.url())
    }

    /// A kube-rs client for it.
    pub fn client(&self) -> kube::Client {
        // The test build links two rustls providers (the SMTP test server brings aws-lc-rs);
        // name ring, as the operator's main does.
        servicehub_operator::notify::transport::install_crypto();
        let config = kube::Config::new(self.url().parse().expect("uri"));
        kube::Client::try_from(config).expect("client")
    }

    /// Stop serving; open watches end.
    pub async fn stop(mut self) {
        self.drop_watches();
        self.halt().await;
    }
}

/// The CRDs as committed in the repository's `crds/` directory (what `kubectl apply -f crds/`
/// would register), not the Rust types: the emulation serves what users install.
fn crds_from_disk() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("crds/").map(|e| e.expect("entry").path()).collect();
    files.sort();
    files.iter().map(|f| serde_yaml::from_str(&std::fs::read_to_string(f).expect("read crd")).expect("a CRD")).collect()
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error(e: &ApiError) -> Response {
    json_response(StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.status())
}

fn api_version(r: &Resource) -> String {
    if r.group.is_empty() { r.version.clone() } else { format!("{}/{}", r.group, r.version) }
}

/// What a request path names.
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse(segments: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segments {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, more @ ..] if !matches!(*plural, "status" | "finalize") => {
            (Some((*ns).to_owned()), [&[*plural][..], more].concat())
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, status) = match rest.as_slice() {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some((*name).to_owned()), false),
        [plural, name, "status"] => (*plural, Some((*name).to_owned()), true),
        _ => return None,
    };
    let resource = Resource { group: group.into(), version: version.into(), plural: plural.into() };
    Some(Target { resource, namespace, name, status })
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let is_watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    {
        let mut stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.requests += 1;
        stats.writes += u64::from(method != Method::GET);
        stats.watches += u64::from(is_watch);
        let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
        if let Some(t) = parse(&segments) {
            let plural = &t.resource.plural;
            let key = if t.status { format!("{plural}/status") } else { plural.clone() };
            let verb = match (&method, t.name.is_some()) {
                (&Method::GET, true) => "get",
                (&Method::GET, false) if is_watch => "watch",
                (&Method::GET, false) => "list",
                (&Method::POST, _) => "create",
                (&Method::PUT, _) => "update",
                (&Method::PATCH, _) => "patch",
                (&Method::DELETE, true) => "delete",
                (&Method::DELETE, false) => "deletecollection",
                _ => "other",
            };
            stats.calls.insert((verb.into(), t.resource.group.clone(), key.clone(), t.namespace.clone()));
            if method != Method::GET {
                if let Some(name) = &t.name {
                    let object = format!("{key} {}/{name}", t.namespace.as_deref().unwrap_or(""));
                    *stats.writes_by_object.entry(object).or_default() += 1;
                }
                *stats.writes_by_resource.entry(key).or_default() += 1;
            }
        }
    }
    let (latency, injected) = {
        let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
        let injected = match f.fail_next {
            Some((n, code)) if n > 0 => {
                f.fail_next = if n > 1 { Some((n - 1, code)) } else { None };
                Some(code)
            }
            _ => None,
        };
        (f.latency, injected)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = injected {
        let message = "injected failure".to_owned();
        return error(&ApiError { code, reason: "InternalError", message });
    }
    let reg = shared.registry.clone();
    let fields = if query.get("fieldValidation").is_some_and(|v| v == "Strict") {
        FieldValidation::Strict
    } else {
        FieldValidation::Prune
    };
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    if let Some(doc) = discovery(&reg, &segments) {
        return json_response(StatusCode::OK, &doc);
    }
    let Some(t) = parse(&segments) else {
        return error(&ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find {}", uri.path()),
        });
    };
    let ns = t.namespace.as_deref();
    let part = if t.status { Part::Status } else { Part::Main };
    let body_json = || {
        serde_json::from_slice::<Value>(&body).map_err(|e| ApiError {
            code: 400,
            reason: "BadRequest",
            message: e.to_string(),
        })
    };
    let result: Result<(StatusCode, Value), ApiError> = match (method, &t.name) {
        (Method::GET, None) if is_watch => {
            return watch(reg, t, &query, shared.drop_watches.subscribe());
        }
        (Method::GET, None) => list(&reg, &t, &query).map(ok),
        (Method::GET, Some(name)) => reg.get(&t.resource, ns, name).map(ok),
        (Method::POST, None) => match body_json() {
            Ok(obj) => reg.create(&t.resource, ns, obj, fields).map(|o| {
                // One store behind both Event APIs, as in kube-apiserver: what the operator
                // writes through events.k8s.io/v1, `kubectl describe` reads through core/v1.
                if t.resource.group == "events.k8s.io" {
                    let core = Resource { group: String::new(), version: "v1".into(), plural: "events".into() };
                    let _ = reg.create(&core, ns, core_event(&o), FieldValidation::Prune);
                }
                (StatusCode::CREATED, o)
            }),
            Err(e) => Err(e),
        },
        (Method::PUT, Some(name)) => {
            body_json().and_then(|obj| reg.update(&t.resource, ns, name, obj, part, fields)).map(ok)
        }
        (Method::PATCH, Some(name)) => {
            let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            if ctype == "application/apply-patch+yaml" {
                let manager = query.get("fieldManager").cloned().unwrap_or_default();
                if manager.is_empty() {
                    let message =
                        "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value: is required for apply patch"
                            .to_owned();
                    return error(&ApiError { code: 422, reason: "Invalid", message });
                }
                let force = query.get("force").is_some_and(|f| f == "true");
                // YAML is a superset of JSON: kube-rs sends JSON, kubectl may send YAML.
                let config: Result<Value, ApiError> = serde_yaml::from_slice(&body).map_err(|e| ApiError {
                    code: 400,
                    reason: "BadRequest",
                    message: e.to_string(),
                });
                return match config.and_then(|c| reg.apply(&t.resource, ns, name, &c, part, &manager, force, fields)) {
                    Ok((v, true)) => json_response(StatusCode::CREATED, &v),
                    Ok((v, false)) => json_response(StatusCode::OK, &v),
                    Err(e) => error(&e),
                };
            }
            body_json()
                .and_then(|patch| match ctype.as_str() {
                    "application/merge-patch+json" => reg.merge_patch(&t.resource, ns, name, &patch, part, fields),
                    "application/json-patch+json" => {
                        let current = reg.get(&t.resource, ns, name)?;
                        // Like kube-apiserver's JSON patch, a `test` for null passes on a
                        // missing field (kube-runtime's finalizer helper relies on it).
                        let patch: Vec<Value> = patch
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|op| {
                                let null_test = op["op"] == "test" && op["value"].is_null();
                                !(null_test && op["path"].as_str().is_some_and(|p| current.pointer(p).is_none()))
                            })
                            .collect();
                        let ops: json_patch::Patch = serde_json::from_value(Value::Array(patch))
                            .map_err(|e| ApiError { code: 400, reason: "BadRequest", message: e.to_string() })?;
                        let mut doc = current;
                        json_patch::patch(&mut doc, &ops).map_err(|e| ApiError {
                            code: 422,
                            reason: "Invalid",
                            message: e.to_string(),
                        })?;
                        reg.update(&t.resource, ns, name, doc, part, fields)
                    }
                    other => Err(ApiError {
                        code: 415,
                        reason: "UnsupportedMediaType",
                        message: format!("unsupported patch type {other:?}"),
                    }),
                })
                .map(ok)
        }
        (Method::DELETE, Some(name)) => reg.delete(&t.resource, ns, name).map(ok),
        (m, _) => {
            Err(ApiError { code: 405, reason: "MethodNotAllowed", message: format!("{m} is not supported here") })
        }
    };
    match result {
        Ok((code, v)) => json_response(code, &v),
        Err(e) => error(&e),
    }
}

fn ok(v: Value) -> (StatusCode, Value) {
    (StatusCode::OK, v)
}

/// A list page: label selector, then `limit` items after the `continue` token (the last
/// key of the previous page). Pages read the current state, not a snapshot of the first
/// page's version (kube-apiserver keeps pages consistent; nothing here depends on it).
/// The fields a field selector may name, as a flat map (`metadata.name`, `metadata.namespace`,
/// and a core/v1 Event's `involvedObject.*`, which `kubectl describe` selects by).
fn selectable_fields(o: &Value) -> Value {
    let involved = &o["involvedObject"];
    json!({
        "metadata.name": o["metadata"]["name"],
        "metadata.namespace": o["metadata"]["namespace"],
        "involvedObject.name": involved["name"],
        "involvedObject.namespace": involved["namespace"],
        "involvedObject.kind": involved["kind"],
        "involvedObject.uid": involved["uid"],
    })
}

/// The core/v1 view of an events.k8s.io/v1 Event.
fn core_event(e: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": { "name": e["metadata"]["name"], "namespace": e["metadata"]["namespace"] },
        "involvedObject": e["regarding"],
        "related": e["related"],
        "reason": e["reason"],
        "message": e["note"],
        "type": e["type"],
        "action": e["action"],
        "eventTime": e["eventTime"],
        "reportingComponent": e["reportingController"],
        "reportingInstance": e["reportingInstance"],
        "source": { "component": e["reportingController"] },
        "count": 1,
    })
}

/// Label and field selectors of a request, combined.
fn selectors(
    query: &HashMap<String, String>,
) -> Result<impl Fn(&Value) -> bool + Clone + Send + Sync + 'static, ApiError> {
    let labels = Selector::parse(query.get("labelSelector").map(String::as_str).unwrap_or_default())?;
    let fields = Selector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or_default())?;
    Ok(move |o: &Value| labels.matches(&o["metadata"]["labels"]) && fields.matches(&selectable_fields(o)))
}

fn list(reg: &Registry, t: &Target, query: &HashMap<String, String>) -> Result<Value, ApiError> {
    let keep = selectors(query)?;
    let after = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(|c| c.split_once('/').map(|(ns, n)| (ns.to_owned(), n.to_owned())).unwrap_or_default());
    let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let (items, rv, next) = reg.list_page(&t.resource, t.namespace.as_deref(), after, limit, keep)?;
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if let Some((ns, name)) = next {
        meta["continue"] = Value::String(format!("{ns}/{name}"));
    }
    let kind = reg.kinds().into_iter().find(|(r, _)| *r == t.resource).map(|(_, k)| k.kind).unwrap_or_default();
    Ok(
        json!({ "apiVersion": api_version(&t.resource), "kind": format!("{kind}List"), "metadata": meta, "items": items }),
    )
}

/// A label selector: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`, joined by commas.
#[derive(Clone, Debug, Default)]
pub struct Selector(Vec<Requirement>);

#[derive(Clone, Debug)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Selector {
    /// Parse a selector; an empty one matches everything.
    pub fn parse(s: &str) -> Result<Selector, ApiError> {
        let bad =
            || ApiError { code: 400, reason: "BadRequest", message: format!("unable to parse requirement: {s:?}") };
        // Split on commas outside parentheses.
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        let mut reqs = Vec::new();
        for p in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let set = |rest: &str| -> Result<Vec<String>, ApiError> {
                let inner = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(bad)?;
                Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
            };
            let req = if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(rest)?)
            } else if let Some((k, rest)) = p.split_once(" in ") {
                Requirement::In(k.trim().into(), set(rest)?)
            } else if let Some(k) = p.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if p.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Requirement::Exists(p.into())
            } else {
                return Err(bad());
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    /// Whether labels (a JSON map, or null) satisfy every requirement.
    pub fn matches(&self, labels: &Value) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
        })
    }
}

/// Discovery documents: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/GROUP/VERSION`.
fn discovery(reg: &Registry, segments: &[&str]) -> Option<Value> {
    let kinds = reg.kinds();
    let resources = |group: &str, version: &str| {
        let list: Vec<Value> = kinds
            .iter()
            .filter(|(r, _)| r.group == group && r.version == version)
            .flat_map(|(r, k)| {
                let verbs = json!(["create", "delete", "get", "list", "patch", "update", "watch"]);
                let mut v = vec![json!({
                    "name": r.plural, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced,
                    "kind": k.kind, "verbs": verbs, "shortNames": k.short_names, "categories": k.categories,
                })];
                if k.status_subresource {
                    v.push(
                        json!({ "name": format!("{}/status", r.plural), "singularName": "", "namespaced": k.namespaced,
                        "kind": k.kind, "verbs": ["get", "patch", "update"] }),
                    );
                }
                v
            })
            .collect();
        let gv = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list })
    };
    match segments {
        ["version"] => Some(
            json!({ "major": "1", "minor": "30", "gitVersion": "v1.30.0-servicehub-emulator", "platform": "linux/amd64" }),
        ),
        ["api"] => Some(json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [] })),
        ["api", "v1"] => Some(resources("", "v1")),
        ["apis"] => {
            let mut groups: Vec<(String, String)> = kinds
                .iter()
                .filter(|(r, _)| !r.group.is_empty())
                .map(|(r, _)| (r.group.clone(), r.version.clone()))
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(g, v)| {
                    let gv = json!({ "groupVersion": format!("{g}/{v}"), "version": v });
                    json!({ "name": g, "versions": [gv.clone()], "preferredVersion": gv })
                })
                .collect();
            Some(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }))
        }
        ["apis", g, v] if kinds.iter().any(|(r, _)| r.group == *g && r.version == *v) => Some(resources(g, v)),
        _ => None,
    }
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({ "type": kind, "object": object }).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// A watch: newline-delimited JSON events from the given version (or, without one, the
/// current objects as ADDED first), bookmarks when allowed, a 410 ERROR event when the
/// version is too old, ended after `timeoutSeconds`.
fn watch(
    reg: Arc<Registry>,
    t: Target,
    query: &HashMap<String, String>,
    mut dropped: tokio::sync::watch::Receiver<u64>,
) -> Response {
    let ns = t.namespace.clone();
    let resource = t.resource.clone();
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = query.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).unwrap_or(1800);
    let from: Option<u64> = query.get("resourceVersion").and_then(|s| s.parse().ok()).filter(|rv| *rv > 0);
    let kind = reg.kinds().into_iter().find(|(r, _)| *r == resource).map(|(_, k)| k.kind).unwrap_or_default();
    let api_version = api_version(&resource);
    let keep = match selectors(query) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let matches = {
        let (resource, ns, keep) = (resource.clone(), ns.clone(), keep.clone());
        move |e: &Event| {
            e.resource == resource
                && ns.as_deref().is_none_or(|n| e.object["metadata"]["namespace"].as_str() == Some(n))
                && keep(&e.object)
        }
    };
    let mut initial: Vec<Bytes> = Vec::new();
    let subscription = match from {
        None => match reg.list(&resource, ns.as_deref()) {
            Ok((items, rv)) => {
                initial.extend(items.iter().filter(|o| keep(o)).map(|o| watch_line("ADDED", o)));
                reg.watch_from(rv)
            }
            Err(e) => Err(e),
        },
        Some(rv) => reg.watch_from(rv),
    };
    let (past, rx) = match subscription {
        Ok(s) => s,
        Err(e) => {
            // As kube-apiserver does: a 200 stream carrying one ERROR event with the Status.
            let body = Body::from(watch_line("ERROR", &e.status()));
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
    };
    let encode = |e: &Event| {
        let t = match e.kind {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        };
        watch_line(t, &e.object)
    };
    initial.extend(past.iter().filter(|e| matches(e)).map(encode));
    let head = futures::stream::iter(initial.into_iter().map(Ok::<Bytes, std::io::Error>));
    let live = futures::stream::unfold((rx, tokio::time::interval(BOOKMARK_EVERY)), move |(mut rx, mut tick)| {
        let (reg, matches, kind, api_version) = (reg.clone(), matches.clone(), kind.clone(), api_version.clone());
        async move {
            loop {
                tokio::select! {
                    got = rx.recv() => match got {
                        Ok(e) if matches(&e) => return Some((Ok(encode(&e)), (rx, tick))),
                        Ok(_) => continue,
                        // Lagged or closed: end the watch; the client lists and watches again.
                        Err(_) => return None,
                    },
                    _ = tick.tick(), if bookmarks => {
                        let rv = reg.resource_version().to_string();
                        let obj = json!({ "kind": kind, "apiVersion": api_version, "metadata": { "resourceVersion": rv } });
                        return Some((Ok(watch_line("BOOKMARK", &obj)), (rx, tick)));
                    }
                }
            }
        }
    });
    let ends = async move {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(timeout)) => {}
            _ = dropped.changed() => {}
        }
    };
    let stream = head.chain(live).take_until(ends);
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response()
}

/// A kubeconfig for the API server at `server` (plain HTTP, no credentials), which need not
/// be there: tests of an unreachable cluster use it too.
pub fn kubeconfig_for(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulated\n  cluster:\n    server: {server}\ncontexts:\n- name: emulated\n  context:\n    cluster: emulated\n    user: tester\n    namespace: default\ncurrent-context: emulated\nusers:\n- name: tester\n  user: {{}}\n"
    )
}
