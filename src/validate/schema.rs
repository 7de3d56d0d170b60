//! Structural-schema checks of an object against its CRD's `openAPIV3Schema`, the way the API
//! server checks it: types, required fields, enums, lengths, patterns, formats, list sets, and
//! unknown fields rejected (kubectl's default strict field validation). Defaults declared in the
//! schema are applied on the way, as the API server does before it evaluates CEL rules.

use serde_json::{Map, Value};

/// A schema violation at a field path such as `spec.agreement.kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError {
    /// Dotted path with list indexes, e.g. `spec.supportContacts[1].email`.
    pub field: String,
    /// What is wrong, in the API server's words.
    pub message: String,
}

/// ObjectMeta fields a user may write.
const METADATA_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "finalizers",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
    "selfLink",
];

/// Check `object` (a whole custom resource) against `schema`, applying defaults in place.
/// `status` is not checked: the main resource ignores it.
pub fn check_object(schema: &Value, object: &mut Value) -> Vec<SchemaError> {
    let mut errors = Vec::new();
    let Some(obj) = object.as_object_mut() else {
        errors.push(SchemaError { field: String::new(), message: "must be a mapping (an object)".into() });
        return errors;
    };
    obj.remove("status");
    if let Some(meta) = obj.get("metadata") {
        check_metadata(meta, &mut errors);
    } else {
        errors.push(required("metadata"));
    }
    let props = schema.get("properties").and_then(Value::as_object);
    for (key, value) in obj.iter_mut() {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(key)) {
            Some(sub) => check(sub, value, key, &mut errors),
            None => errors.push(unknown(key)),
        }
    }
    check_required_and_defaults(schema, obj, "", &mut errors);
    errors
}

fn check_metadata(meta: &Value, errors: &mut Vec<SchemaError>) {
    let Some(meta) = meta.as_object() else {
        errors.push(SchemaError { field: "metadata".into(), message: "must be a mapping".into() });
        return;
    };
    for key in meta.keys() {
        if !METADATA_FIELDS.contains(&key.as_str()) {
            errors.push(unknown(&format!("metadata.{key}")));
        }
    }
    match meta.get("name").and_then(Value::as_str) {
        None => errors.push(required("metadata.name")),
        Some(name) => {
            if let Err(msg) = dns_subdomain(name) {
                errors.push(invalid("metadata.name", &Value::String(name.into()), &msg));
            }
        }
    }
    if let Some(ns) = meta.get("namespace") {
        match ns.as_str() {
            Some(s) if dns_label(s) => {}
            _ => errors.push(invalid("metadata.namespace", ns, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")),
        }
    }
    for map in ["labels", "annotations"] {
        if let Some(v) = meta.get(map)
            && !v.as_object().is_some_and(|m| m.values().all(Value::is_string))
        {
            errors.push(invalid(&format!("metadata.{map}"), v, "must be a map of string keys to string values"));
        }
    }
}

/// A DNS-1123 subdomain, as Kubernetes requires of object names.
pub fn dns_subdomain(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(dns_label_any_len)
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into())
    }
}

fn dns_label(s: &str) -> bool {
    s.len() <= 63 && dns_label_any_len(s)
}

fn dns_label_any_len(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check(schema: &Value, value: &mut Value, path: &str, errors: &mut Vec<SchemaError>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        errors.push(invalid(path, value, "must not be null"));
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let type_ok = match ty {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        let ty = ty.unwrap_or("unknown");
        errors.push(invalid(path, value, &format!("must be of type {ty}")));
        return;
    }
    match value {
        Value::Object(map) => check_map(schema, map, path, errors),
        Value::Array(items) => check_array(schema, items, path, errors),
        Value::String(s) => check_string(schema, s, path, errors),
        Value::Number(n) => {
            if let (Some(min), Some(v)) = (schema.get("minimum").and_then(Value::as_f64), n.as_f64())
                && v < min
            {
                errors.push(invalid(path, value, &format!("should be greater than or equal to {min}")));
            }
        }
        _ => {}
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(SchemaError {
            field: path.into(),
            message: format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
        });
    }
}

fn check_map(schema: &Value, map: &mut Map<String, Value>, path: &str, errors: &mut Vec<SchemaError>) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    for (key, value) in map.iter_mut() {
        let sub_path = join(path, key);
        match (props.and_then(|p| p.get(key)), additional) {
            (Some(sub), _) => check(sub, value, &sub_path, errors),
            (None, Some(add)) if add.is_object() => check(add, value, &sub_path, errors),
            (None, Some(Value::Bool(true))) => {}
            (None, _) if preserve => {}
            (None, _) => errors.push(unknown(&sub_path)),
        }
    }
    check_required_and_defaults(schema, map, path, errors);
}

fn check_required_and_defaults(
    schema: &Value,
    map: &mut Map<String, Value>,
    path: &str,
    errors: &mut Vec<SchemaError>,
) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (key, sub) in props {
            if !map.contains_key(key)
                && let Some(default) = sub.get("default")
            {
                map.insert(key.clone(), default.clone());
            }
        }
    }
    for key in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(key) = key.as_str()
            && !map.contains_key(key)
        {
            errors.push(required(&join(path, key)));
        }
    }
}

fn check_array(schema: &Value, items: &mut [Value], path: &str, errors: &mut Vec<SchemaError>) {
    let len = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        errors.push(SchemaError {
            field: path.into(),
            message: format!("Too many: {len}: must have at most {max} items"),
        });
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        errors.push(SchemaError {
            field: path.into(),
            message: format!("Invalid value: {len}: must have at least {min} items"),
        });
    }
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                errors.push(SchemaError { field: format!("{path}[{i}]"), message: format!("Duplicate value: {item}") });
            }
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter_mut().enumerate() {
            check(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
}

fn check_string(schema: &Value, s: &str, path: &str, errors: &mut Vec<SchemaError>) {
    let value = Value::String(s.into());
    let chars = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && chars > max
    {
        errors.push(SchemaError { field: path.into(), message: format!("Too long: may not be more than {max} bytes") });
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && chars < min
    {
        errors.push(invalid(path, &value, &format!("should be at least {min} chars long")));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match compiled(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => errors.push(invalid(path, &value, &format!("should match '{pattern}'"))),
            Err(e) => errors.push(invalid(path, &value, &format!("schema pattern does not compile: {e}"))),
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date") && s.parse::<jiff::civil::Date>().is_err() {
        errors.push(invalid(path, &value, "must be a date in the form YYYY-MM-DD"));
    }
}

/// A schema pattern, compiled once per process (validating thousands of objects would
/// otherwise compile the same few patterns thousands of times).
fn compiled(pattern: &str) -> Result<regex::Regex, regex::Error> {
    static CACHE: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, regex::Regex>>> =
        std::sync::LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = cache.get(pattern) {
        return Ok(re.clone());
    }
    let re = regex::Regex::new(pattern)?;
    cache.insert(pattern.to_owned(), re.clone());
    Ok(re)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn required(path: &str) -> SchemaError {
    SchemaError { field: path.into(), message: "Required value".into() }
}

fn unknown(path: &str) -> SchemaError {
    SchemaError {
        field: path.into(),
        message: "unknown field: it is not part of the schema (check its spelling and indentation)".into(),
    }
}

fn invalid(path: &str, value: &Value, why: &str) -> SchemaError {
    SchemaError { field: path.into(), message: format!("Invalid value: {value}: {why}") }
}
