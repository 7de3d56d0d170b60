//! The emulated API server's object registry. See the module docs of `apiserver`.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A resource type: API group (empty for the core group), version and plural name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    /// API group, `""` for core.
    pub group: String,
    /// Version, e.g. `v1alpha1`.
    pub version: String,
    /// Plural name, e.g. `customers`.
    pub plural: String,
}

/// What the registry knows about a resource type.
#[derive(Clone, Debug)]
pub struct Kind {
    /// The kind name.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether `status` is a subresource (then the main resource ignores it).
    pub status_subresource: bool,
    /// Short names (`kubectl get cust`).
    pub short_names: Vec<String>,
    /// Categories (`kubectl get servicehub`).
    pub categories: Vec<String>,
}

/// An API error, rendered as a `metav1.Status` by the HTTP layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP code: 404, 409, 410, 422.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Expired`, `Invalid`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into() }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        })
    }
}

/// A list page: the objects, the list's resource version, and where to continue (namespace,
/// name) when more remain.
pub type Page = (Vec<Value>, u64, Option<(String, String)>);

/// Watch event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed (including a delete that only set `deletionTimestamp`).
    Modified,
    /// Gone.
    Deleted,
}

/// One change, as a watch delivers it.
#[derive(Clone, Debug)]
pub struct Event {
    /// The resource version the change produced.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// To which resource type.
    pub resource: Resource,
    /// The object after the change (before it, for a delete, with the delete's rv).
    pub object: Value,
}

/// Which part of an object an update writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but status (when status is a subresource).
    Main,
    /// The status subresource: status only.
    Status,
}

type Key = (Resource, String, String);

struct State {
    rv: u64,
    kinds: BTreeMap<Resource, Kind>,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Event>,
    history_limit: usize,
    /// Events at or below this version are no longer kept: resuming there is a 410.
    compacted: u64,
    uid_seq: u64,
    /// Random per server, as a real cluster's uids are unique across clusters: objects
    /// re-created in a second emulated cluster get new uids, not the first one's again.
    uid_prefix: u32,
}

/// How the API server treats fields its schema does not know (`?fieldValidation=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently (kube-apiserver's behaviour for clients that do not ask).
    Prune,
    /// Reject the request with 422 (what kubectl asks for with `--validate=strict`).
    Strict,
}

/// A CRD's schema, for 422s as the API server gives them.
pub struct Schema {
    /// The `openAPIV3Schema`.
    pub schema: Value,
    /// Its CEL rules, compiled once.
    pub compiled: kube::core::cel::CompiledSchema,
}

/// The registry.
pub struct Registry {
    state: Mutex<State>,
    watchers: tokio::sync::broadcast::Sender<Event>,
    schemas: Mutex<BTreeMap<Resource, Arc<Schema>>>,
    /// Server-side apply: which field manager applied each leaf field of each object.
    owners: Mutex<BTreeMap<Key, BTreeMap<String, String>>>,
}

/// Leaf fields of an applied configuration, as `/`-separated paths: scalars and lists are
/// leaves (lists are atomic here); of `metadata`, only labels, annotations and finalizers.
fn leaves(value: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if path == "/metadata" && !matches!(k.as_str(), "labels" | "annotations" | "finalizers") {
                    continue;
                }
                leaves(v, &format!("{path}/{k}"), out);
            }
        }
        other => {
            out.insert(path.to_owned(), other.clone());
        }
    }
}

/// `metadata.managedFields` as a real API server keeps it for an object that a client wrote
/// (its labels, annotations and spec: one `Update` entry), that the operator gave its
/// finalizer (one `Update` entry) and whose status the operator applies (one `Apply` entry
/// on the status subresource), each with the FieldsV1 set of its fields. The emulation does
/// not track who wrote what for this (server-side apply ownership is kept apart, in
/// `owners`); it keeps the size and shape, which is what a client's caches pay for.
fn managed_fields(object: &Value) -> Value {
    let api_version = object.get("apiVersion").cloned().unwrap_or(Value::Null);
    let time = Value::String(now_rfc3339());
    let entry = |manager: &str, operation: &str, subresource: Option<&str>, fields: Value| {
        let mut e = json!({
            "manager": manager, "operation": operation, "apiVersion": api_version, "time": time,
            "fieldsType": "FieldsV1", "fieldsV1": fields,
        });
        if let Some(sub) = subresource {
            e["subresource"] = Value::String(sub.to_owned());
        }
        e
    };
    let mut entries = Vec::new();
    let m = object.get("metadata");
    let mut main = Map::new();
    let mut meta_fields = Map::new();
    for key in ["labels", "annotations"] {
        if let Some(v) = m.and_then(|m| m.get(key)) {
            meta_fields.insert(format!("f:{key}"), fields_v1(v));
        }
    }
    if !meta_fields.is_empty() {
        main.insert("f:metadata".into(), Value::Object(meta_fields));
    }
    for (k, v) in object.as_object().into_iter().flatten() {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status") {
            main.insert(format!("f:{k}"), fields_v1(v));
        }
    }
    if !main.is_empty() {
        entries.push(entry("kubectl-client-side-apply", "Update", None, Value::Object(main)));
    }
    if let Some(f) = m.and_then(|m| m.get("finalizers")) {
        entries.push(entry("servicehub", "Update", None, json!({ "f:metadata": { "f:finalizers": fields_v1(f) } })));
    }
    if let Some(st) = object.get("status").filter(|s| !s.is_null()) {
        entries.push(entry("servicehub-operator", "Apply", Some("status"), json!({ "f:status": fields_v1(st) })));
    }
    Value::Array(entries)
}

/// The FieldsV1 set of a value: `f:` per map key, `v:` per scalar list item, `k:` per map
/// list item (keyed by `type`, `name` or `email`, else its first field), `.` for a set container.
fn fields_v1(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            if !map.is_empty() {
                out.insert(".".into(), json!({}));
            }
            for (k, v) in map {
                out.insert(format!("f:{k}"), fields_v1(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Map::new();
            out.insert(".".into(), json!({}));
            for item in items {
                match item {
                    Value::Object(o) => {
                        let key = ["type", "name", "email"]
                            .iter()
                            .find_map(|k| o.get(*k).map(|v| json!({ *k: v }).to_string()))
                            .or_else(|| o.iter().next().map(|(k, v)| json!({ k: v }).to_string()))
                            .unwrap_or_default();
                        out.insert(format!("k:{key}"), fields_v1(item));
                    }
                    scalar => {
                        out.insert(format!("v:{scalar}"), json!({}));
                    }
                }
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

/// Set `value` at a `/`-separated path, creating objects on the way.
fn set_pointer(doc: &mut Value, path: &str, value: Value) {
    let mut cur = doc;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().expect("object");
        if i + 1 == parts.len() {
            map.insert((*part).to_owned(), value);
            return;
        }
        cur = map.entry((*part).to_owned()).or_insert_with(|| json!({}));
    }
}

/// Remove fields the schema does not declare, as kube-apiserver prunes them.
fn prune(schema: &Value, value: &mut Value) {
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            if let Some(props) = props {
                if !preserve && additional.is_none() {
                    map.retain(|k, _| props.contains_key(k));
                }
                for (k, v) in map.iter_mut() {
                    if let Some(sub) = props.get(k) {
                        prune(sub, v);
                    }
                }
            } else if let Some(add) = additional.filter(|a| a.is_object()) {
                for v in map.values_mut() {
                    prune(add, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for v in items {
                    prune(item_schema, v);
                }
            }
        }
        _ => {}
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

fn meta(o: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    o.get("metadata").and_then(Value::as_object).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn meta_mut(o: &mut Value) -> &mut Map<String, Value> {
    if !o.get("metadata").is_some_and(Value::is_object) {
        o["metadata"] = json!({});
    }
    o["metadata"].as_object_mut().expect("metadata is an object")
}

fn finalizers(o: &Value) -> usize {
    meta(o).get("finalizers").and_then(Value::as_array).map_or(0, Vec::len)
}

impl Registry {
    /// An empty registry keeping the last `history_limit` events for watch resumption.
    pub fn new(history_limit: usize) -> Registry {
        let (watchers, _) = tokio::sync::broadcast::channel(65_536);
        Registry {
            state: Mutex::new(State {
                rv: 1,
                kinds: BTreeMap::new(),
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_limit,
                compacted: 1,
                uid_seq: 0,
                uid_prefix: rand::random(),
            }),
            watchers,
            schemas: Mutex::new(BTreeMap::new()),
            owners: Mutex::new(BTreeMap::new()),
        }
    }

    /// Server-side apply by `manager`: create the object if missing; else set the applied
    /// fields, remove the fields this manager applied before and no longer does, and refuse
    /// (409) to change a field another manager applied unless `force`.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        config: &Value,
        part: Part,
        manager: &str,
        force: bool,
        fields: FieldValidation,
    ) -> Result<(Value, bool), ApiError> {
        let mut applied = BTreeMap::new();
        let scoped = match part {
            Part::Main => config.clone(),
            Part::Status => json!({ "status": config.get("status").cloned().unwrap_or(Value::Null) }),
        };
        leaves(&scoped, "", &mut applied);
        let kind = Self::kind(&self.lock(), r)?;
        let ns = if kind.namespaced { namespace.unwrap_or("default").to_owned() } else { String::new() };
        let key = (r.clone(), ns, name.to_owned());
        let current = match self.get(r, namespace, name) {
            Ok(c) => c,
            Err(e) if e.code == 404 && part == Part::Main => {
                let mut obj = config.clone();
                meta_mut(&mut obj).insert("name".into(), Value::String(name.to_owned()));
                let created = self.create(r, namespace, obj, fields)?;
                let owned = applied.into_keys().map(|p| (p, manager.to_owned())).collect();
                self.owners.lock().unwrap_or_else(|e| e.into_inner()).insert(key, owned);
                return Ok((created, true));
            }
            Err(e) => return Err(e),
        };
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned().unwrap_or_default();
        let conflicts: Vec<String> = applied
            .iter()
            .filter(|(path, value)| {
                owners.get(*path).is_some_and(|m| m != manager) && current.pointer(path) != Some(*value)
            })
            .map(|(path, _)| {
                format!("conflict with {:?}: .{}", owners[path], path.trim_start_matches('/').replace('/', "."))
            })
            .collect();
        if !conflicts.is_empty() && !force {
            let n = conflicts.len();
            let s = if n == 1 { "" } else { "s" };
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Apply failed with {n} conflict{s}: {}", conflicts.join(", ")),
            ));
        }
        let mut merged = current.clone();
        // Fields this manager applied before and no longer applies are removed, unless
        // another manager also holds them.
        let dropped: Vec<String> = owners
            .iter()
            .filter(|(path, m)| *m == manager && !applied.contains_key(*path))
            .map(|(path, _)| path.clone())
            .collect();
        for path in &dropped {
            owners.remove(path);
            // Remove the field, then each map above it that is left empty and that this
            // apply does not set again: a manager that stops applying `.status.invitation`
            // removes `invitation`, not just its leaves (as structured-merge-diff does).
            let mut path = path.as_str();
            while let Some((parent, last)) = path.rsplit_once('/') {
                let Some(obj) = merged.pointer_mut(parent).and_then(Value::as_object_mut) else { break };
                obj.remove(last);
                let now_empty = obj.is_empty();
                let reapplied = applied.keys().any(|k| k.starts_with(&format!("{parent}/")));
                if !now_empty || reapplied || parent.matches('/').count() < 2 {
                    break;
                }
                path = parent;
            }
        }
        for (path, value) in &applied {
            set_pointer(&mut merged, path, value.clone());
            owners.insert(path.clone(), manager.to_owned());
        }
        meta_mut(&mut merged).remove("resourceVersion");
        let stored = self.update(r, namespace, name, merged, part, fields)?;
        self.owners.lock().unwrap_or_else(|e| e.into_inner()).insert(key, owners);
        Ok((stored, false))
    }

    /// Validate objects of `r` against a CRD schema and its CEL rules on every write.
    pub fn set_schema(&self, r: Resource, schema: Value) {
        let compiled = kube::core::cel::compile_schema(&schema);
        self.schemas.lock().unwrap_or_else(|e| e.into_inner()).insert(r, Arc::new(Schema { schema, compiled }));
    }

    /// Prune or reject unknown fields, apply defaults, check types and CEL rules (with
    /// `oldSelf` on updates). Returns the object as it will be stored.
    fn admit(
        &self,
        r: &Resource,
        kind: &str,
        mut obj: Value,
        old: Option<&Value>,
        fields: FieldValidation,
    ) -> Result<Value, ApiError> {
        let Some(s) = self.schemas.lock().unwrap_or_else(|e| e.into_inner()).get(r).cloned() else {
            return Ok(obj);
        };
        let name = meta(&obj).get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let status = obj.get("status").cloned();
        if fields == FieldValidation::Prune {
            // Type information and metadata are never pruned.
            let kept: Vec<(&str, Value)> = ["apiVersion", "kind", "metadata"]
                .into_iter()
                .filter_map(|k| obj.get(k).cloned().map(|v| (k, v)))
                .collect();
            prune(&s.schema, &mut obj);
            for (k, v) in kept {
                obj[k] = v;
            }
        }
        let mut checked = obj.clone();
        let mut errors: Vec<String> = servicehub_operator::validate::schema::check_object(&s.schema, &mut checked)
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        if errors.is_empty() {
            let old_value = old.cloned();
            if let Err(cel) =
                kube::core::cel::Validator::new().validate_compiled(&s.compiled, &checked, old_value.as_ref())
            {
                errors.extend(
                    cel.into_vec()
                        .into_iter()
                        .map(|e| format!("{}: {}", e.field_path.trim_start_matches('.'), e.message)),
                );
            }
        }
        if !errors.is_empty() {
            let what = format!("{kind}.{}", r.group);
            return Err(ApiError::new(422, "Invalid", format!("{what} \"{name}\" is invalid: {}", errors.join(", "))));
        }
        // Defaults applied by the check are stored, as the API server stores them; the status
        // (not validated by check_object) is put back.
        if let Some(st) = status {
            checked["status"] = st;
        }
        Ok(checked)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a resource type.
    pub fn register(&self, resource: Resource, kind: Kind) {
        self.lock().kinds.insert(resource, kind);
    }

    /// The registered resource types.
    pub fn kinds(&self) -> Vec<(Resource, Kind)> {
        self.lock().kinds.iter().map(|(r, k)| (r.clone(), k.clone())).collect()
    }

    /// The current resource version.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    fn kind(state: &State, r: &Resource) -> Result<Kind, ApiError> {
        state.kinds.get(r).cloned().ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({}.{})", r.plural, r.group),
            )
        })
    }

    fn not_found(r: &Resource, name: &str) -> ApiError {
        let what = if r.group.is_empty() { r.plural.clone() } else { format!("{}.{}", r.plural, r.group) };
        ApiError::new(404, "NotFound", format!("{what} \"{name}\" not found"))
    }

    /// Record a change: bump the version, stamp it on the object, keep it for watchers.
    fn commit(&self, state: &mut State, kind: EventType, resource: &Resource, mut object: Value) -> Value {
        state.rv += 1;
        let rv = state.rv;
        let fields = managed_fields(&object);
        meta_mut(&mut object).insert("managedFields".into(), fields);
        meta_mut(&mut object).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let event = Event { rv, kind, resource: resource.clone(), object: object.clone() };
        state.history.push_back(event.clone());
        while state.history.len() > state.history_limit {
            if let Some(e) = state.history.pop_front() {
                state.compacted = e.rv;
            }
        }
        // Nobody listening is fine.
        let _ = self.watchers.send(event);
        object
    }

    /// Create an object. Sets uid, creationTimestamp, generation 1 and the namespace.
    pub fn create(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        object: Value,
        fields: FieldValidation,
    ) -> Result<Value, ApiError> {
        let kind_name = Self::kind(&self.lock(), r)?.kind;
        let mut object = self.admit(r, &kind_name, object, None, fields)?;
        let mut state = self.lock();
        let kind = Self::kind(&state, r)?;
        let name = meta(&object).get("name").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                format!("{} is invalid: metadata.name: Required value: name is required", kind.kind),
            )
        })?;
        let ns = if kind.namespaced { namespace.unwrap_or("default").to_owned() } else { String::new() };
        let key = (r.clone(), ns.clone(), name.clone());
        if state.objects.contains_key(&key) {
            let what = if r.group.is_empty() { r.plural.clone() } else { format!("{}.{}", r.plural, r.group) };
            return Err(ApiError::new(409, "AlreadyExists", format!("{what} \"{name}\" already exists")));
        }
        if kind.status_subresource
            && let Some(o) = object.as_object_mut()
        {
            o.remove("status");
        }
        state.uid_seq += 1;
        let uid = format!("{:08x}-0000-4000-8000-{:012x}", state.uid_prefix, state.uid_seq);
        let m = meta_mut(&mut object);
        m.insert("uid".into(), Value::String(uid));
        m.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
        m.insert("generation".into(), json!(1));
        m.remove("deletionTimestamp");
        if kind.namespaced {
            m.insert("namespace".into(), Value::String(ns));
        }
        let stored = self.commit(&mut state, EventType::Added, r, object);
        state.objects.insert(key, stored.clone());
        Ok(stored)
    }

    /// Get one object.
    pub fn get(&self, r: &Resource, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let state = self.lock();
        let kind = Self::kind(&state, r)?;
        let ns = if kind.namespaced { namespace.unwrap_or("default") } else { "" };
        state.objects.get(&(r.clone(), ns.to_owned(), name.to_owned())).cloned().ok_or_else(|| Self::not_found(r, name))
    }

    /// List objects (all namespaces when `namespace` is `None`), with the list's resource version.
    pub fn list(&self, r: &Resource, namespace: Option<&str>) -> Result<(Vec<Value>, u64), ApiError> {
        let state = self.lock();
        Self::kind(&state, r)?;
        let items = state
            .objects
            .iter()
            .filter(|((res, ns, _), _)| res == r && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect();
        Ok((items, state.rv))
    }

    /// One page of a list in key order (namespace, name): objects after `after` that pass
    /// `keep`, at most `limit`, and the key to continue from when more remain. Walks the
    /// ordered map from the continuation point, so paging through N objects is O(N) overall.
    pub fn list_page(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        after: Option<(String, String)>,
        limit: Option<usize>,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<Page, ApiError> {
        use std::ops::Bound;
        let state = self.lock();
        Self::kind(&state, r)?;
        let start = match after {
            Some((ns, name)) => Bound::Excluded((r.clone(), ns, name)),
            None => Bound::Included((r.clone(), String::new(), String::new())),
        };
        let mut items = Vec::new();
        let mut next = None;
        for ((res, ns, _), v) in state.objects.range((start, Bound::Unbounded)) {
            if res != r {
                break;
            }
            if namespace.is_some_and(|n| n != ns) || !keep(v) {
                continue;
            }
            if limit.is_some_and(|l| items.len() == l) {
                next = items.last().map(|o: &Value| {
                    let m = meta(o);
                    let get = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                    (get("namespace"), get("name"))
                });
                break;
            }
            items.push(v.clone());
        }
        Ok((items, state.rv, next))
    }

    /// Replace an object (PUT), or its status. A `metadata.resourceVersion` that is not the
    /// current one is a 409; an empty one means "unconditionally".
    pub fn update(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        new: Value,
        part: Part,
        fields: FieldValidation,
    ) -> Result<Value, ApiError> {
        let current = self.get(r, namespace, name)?;
        let kind_name = Self::kind(&self.lock(), r)?.kind;
        let new = if part == Part::Main { self.admit(r, &kind_name, new, Some(&current), fields)? } else { new };
        let mut state = self.lock();
        let kind = Self::kind(&state, r)?;
        let ns = if kind.namespaced { namespace.unwrap_or("default").to_owned() } else { String::new() };
        let key = (r.clone(), ns, name.to_owned());
        let old = state.objects.get(&key).cloned().ok_or_else(|| Self::not_found(r, name))?;
        if let Some(rv) = meta(&new).get("resourceVersion").and_then(Value::as_str)
            && !rv.is_empty()
            && Some(rv) != meta(&old).get("resourceVersion").and_then(Value::as_str)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    r.plural, r.group
                ),
            ));
        }
        let mut merged = match (part, kind.status_subresource) {
            // The status subresource writes status only.
            (Part::Status, _) => {
                let mut o = old.clone();
                o["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                o
            }
            // The main resource ignores status when status is a subresource.
            (Part::Main, true) => {
                let mut o = new.clone();
                match old.get("status") {
                    Some(s) => o["status"] = s.clone(),
                    None => {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                o
            }
            (Part::Main, false) => new.clone(),
        };
        // Server-owned metadata is kept from the stored object.
        {
            let old_meta = meta(&old).clone();
            let m = meta_mut(&mut merged);
            for field in
                ["uid", "creationTimestamp", "generation", "deletionTimestamp", "namespace", "name", "managedFields"]
            {
                match old_meta.get(field) {
                    Some(v) => m.insert(field.into(), v.clone()),
                    None => m.remove(field),
                };
            }
            if part == Part::Status {
                // Metadata is not changed through the status subresource.
                *m = old_meta;
            }
        }
        let spec_changed = old.get("spec") != merged.get("spec");
        if spec_changed && part == Part::Main {
            let g = meta(&old).get("generation").and_then(Value::as_i64).unwrap_or(1);
            meta_mut(&mut merged).insert("generation".into(), json!(g + 1));
        }
        if merged == old {
            // A no-op write changes nothing and produces no event.
            return Ok(old);
        }
        if meta(&merged).contains_key("deletionTimestamp") && finalizers(&merged) == 0 {
            let gone = self.commit(&mut state, EventType::Deleted, r, merged);
            state.objects.remove(&key);
            return Ok(gone);
        }
        let stored = self.commit(&mut state, EventType::Modified, r, merged);
        state.objects.insert(key, stored.clone());
        Ok(stored)
    }

    /// Apply a JSON merge patch (RFC 7386) to an object or its status.
    pub fn merge_patch(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
        part: Part,
        fields: FieldValidation,
    ) -> Result<Value, ApiError> {
        let mut current = self.get(r, namespace, name)?;
        json_patch::merge(&mut current, patch);
        // A patch applies to the latest version unless it names one.
        if patch.pointer("/metadata/resourceVersion").is_none() {
            meta_mut(&mut current).remove("resourceVersion");
        }
        self.update(r, namespace, name, current, part, fields)
    }

    /// Delete: with finalizers, only mark it (`deletionTimestamp`, generation + 1); without,
    /// remove it.
    pub fn delete(&self, r: &Resource, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let kind = Self::kind(&state, r)?;
        let ns = if kind.namespaced { namespace.unwrap_or("default").to_owned() } else { String::new() };
        let key = (r.clone(), ns, name.to_owned());
        let mut obj = state.objects.get(&key).cloned().ok_or_else(|| Self::not_found(r, name))?;
        if finalizers(&obj) == 0 {
            let gone = self.commit(&mut state, EventType::Deleted, r, obj);
            state.objects.remove(&key);
            return Ok(gone);
        }
        if meta(&obj).contains_key("deletionTimestamp") {
            return Ok(obj);
        }
        let g = meta(&obj).get("generation").and_then(Value::as_i64).unwrap_or(1);
        let m = meta_mut(&mut obj);
        m.insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
        m.insert("generation".into(), json!(g + 1));
        let stored = self.commit(&mut state, EventType::Modified, r, obj);
        state.objects.insert(key, stored.clone());
        Ok(stored)
    }

    /// Events after `rv` that are still kept, and a receiver for the ones to come. A version
    /// older than the oldest kept event is 410 Gone: the client must list again.
    pub fn watch_from(&self, rv: u64) -> Result<(Vec<Event>, tokio::sync::broadcast::Receiver<Event>), ApiError> {
        let state = self.lock();
        if rv < state.compacted {
            return Err(ApiError::new(410, "Expired", format!("too old resource version: {rv} ({})", state.compacted)));
        }
        let rx = self.watchers.subscribe();
        let past = state.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((past, rx))
    }
}
