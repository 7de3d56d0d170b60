//! CEL rules of the form `self.matches('<literal>')`, evaluated with a regex compiled once.
//!
//! The CEL interpreter compiles the pattern of `matches()` on every evaluation: validating
//! 10,000 Memberships compiled the email pattern some 20,000 times, a third of `validate`'s
//! time (issue 18). Such a rule depends on nothing but the string it sits on, so it is taken
//! out of the schema handed to the interpreter and checked here instead, with the same
//! pattern (RE2 syntax, which the `regex` crate shares), the same field path and the same
//! message. The CRD the API server runs is unchanged; a test below checks that this and the
//! interpreter agree.

use serde_json::Value;

/// One failed rule: the field path (as kube-cel prints it) and the rule's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// e.g. `spec.supportContacts[1].email`.
    pub field: String,
    /// The rule's `message`.
    pub message: String,
}

/// The pattern of a rule that is exactly `self.matches('<literal>')` with a plain `message`
/// (no `fieldPath`, `reason` or `messageExpression`, which would change what is reported).
fn literal_pattern(rule: &Value) -> Option<(String, &str)> {
    let obj = rule.as_object()?;
    if obj.keys().any(|k| k != "rule" && k != "message") {
        return None;
    }
    let message = obj.get("message")?.as_str()?;
    let body = obj.get("rule")?.as_str()?.strip_prefix("self.matches('")?.strip_suffix("')")?;
    // CEL single-quoted string: only `\\` and `\'` are taken as escapes here; any other
    // escape (or a bare quote) leaves the rule to the interpreter.
    let mut pattern = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '\\' => pattern.push('\\'),
                '\'' => pattern.push('\''),
                _ => return None,
            },
            '\'' => return None,
            c => pattern.push(c),
        }
    }
    Some((pattern, message))
}

/// A copy of `schema` without the literal-`matches` rules, for the CEL interpreter.
pub fn without_literal_rules(schema: &Value) -> Value {
    let mut schema = schema.clone();
    strip(&mut schema);
    schema
}

fn strip(node: &mut Value) {
    match node {
        Value::Object(obj) => {
            if let Some(Value::Array(rules)) = obj.get_mut("x-kubernetes-validations") {
                rules.retain(|r| literal_pattern(r).is_none_or(|(p, _)| regex::Regex::new(&p).is_err()));
                if rules.is_empty() {
                    obj.remove("x-kubernetes-validations");
                }
            }
            obj.values_mut().for_each(strip);
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

/// The literal-`matches` rules of a schema, each pattern compiled once.
#[derive(Debug, Default)]
pub struct Rules {
    /// Rules on this node.
    here: Vec<(regex::Regex, String)>,
    properties: Vec<(String, Rules)>,
    items: Option<Box<Rules>>,
    additional: Option<Box<Rules>>,
}

impl Rules {
    /// Collect the rules of `schema`.
    pub fn of(schema: &Value) -> Rules {
        let here = schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(literal_pattern)
            .filter_map(|(p, m)| Some((regex::Regex::new(&p).ok()?, m.to_owned())))
            .collect();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), Rules::of(v)))
            .filter(|(_, r)| !r.is_empty())
            .collect();
        let sub = |key: &str| schema.get(key).filter(|v| v.is_object()).map(Rules::of).filter(|r| !r.is_empty());
        let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
        Rules {
            here,
            properties,
            items: sub("items").map(Box::new),
            additional: if preserve { None } else { sub("additionalProperties").map(Box::new) },
        }
    }

    fn is_empty(&self) -> bool {
        self.here.is_empty() && self.properties.is_empty() && self.items.is_none() && self.additional.is_none()
    }

    /// Check `value` (defaults applied), walking it as kube-cel walks it.
    pub fn check(&self, value: &Value) -> Vec<Failure> {
        let mut out = Vec::new();
        self.walk(value, String::new(), &mut out);
        out
    }

    fn walk(&self, value: &Value, path: String, out: &mut Vec<Failure>) {
        if let Some(s) = value.as_str() {
            for (re, message) in &self.here {
                if !re.is_match(s) {
                    out.push(Failure { field: path.clone(), message: message.clone() });
                }
            }
        }
        if let Some(obj) = value.as_object() {
            for (key, rules) in &self.properties {
                if let Some(v) = obj.get(key) {
                    rules.walk(v, join(&path, key), out);
                }
            }
            if let Some(rules) = &self.additional {
                for (key, v) in obj.iter().filter(|(k, _)| !self.properties.iter().any(|(p, _)| p == *k)) {
                    rules.walk(v, join(&path, key), out);
                }
            }
        }
        if let (Some(rules), Some(items)) = (&self.items, value.as_array()) {
            for (i, v) in items.iter().enumerate() {
                rules.walk(v, format!("{path}[{i}]"), out);
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "owner": { "type": "string", "x-kubernetes-validations": [
                            { "rule": crate::api::EMAIL_RULE, "message": crate::api::common::EMAIL_MESSAGE },
                            { "rule": "self.size() < 40", "message": "short" },
                        ]},
                        "contacts": { "type": "array", "maxItems": 4, "items": {
                            "type": "object",
                            "properties": { "email": { "type": "string", "x-kubernetes-validations": [
                                { "rule": crate::api::EMAIL_RULE, "message": crate::api::common::EMAIL_MESSAGE },
                            ]}}
                        }},
                        "tags": { "type": "object", "additionalProperties": { "type": "string",
                            "x-kubernetes-validations": [{ "rule": "self.matches('^[a-z]+$')", "message": "lower case" }] } },
                        "kept": { "type": "string", "x-kubernetes-validations": [
                            { "rule": "self.matches('^a\\nb$')", "message": "an escape we leave to CEL" },
                            { "rule": "self.matches('^x$')", "message": "with a field path", "fieldPath": ".x" },
                        ]},
                    }
                }
            }
        })
    }

    fn interpreter(schema: &Value, value: &Value) -> Vec<Failure> {
        let compiled = kube::core::cel::compile_schema(schema);
        match kube::core::cel::Validator::new().validate_compiled(&compiled, value, None) {
            Ok(()) => Vec::new(),
            Err(e) => e
                .into_vec()
                .into_iter()
                .map(|e| Failure { field: e.field_path.trim_start_matches('.').to_owned(), message: e.message })
                .collect(),
        }
    }

    #[test]
    fn only_literal_matches_rules_are_taken_out() {
        let stripped = without_literal_rules(&schema());
        let spec = &stripped["properties"]["spec"]["properties"];
        assert_eq!(
            spec["owner"]["x-kubernetes-validations"],
            json!([{ "rule": "self.size() < 40", "message": "short" }])
        );
        assert!(spec["contacts"]["items"]["properties"]["email"].get("x-kubernetes-validations").is_none());
        assert!(spec["tags"]["additionalProperties"].get("x-kubernetes-validations").is_none());
        assert_eq!(spec["kept"]["x-kubernetes-validations"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn agrees_with_the_interpreter_on_good_and_bad_values() {
        let schema = schema();
        let rules = Rules::of(&schema);
        let stripped = without_literal_rules(&schema);
        for value in [
            json!({ "spec": { "owner": "ada@contoso.com", "contacts": [{ "email": "a@b.co" }], "tags": { "t": "abc" } } }),
            json!({ "spec": { "owner": "not an email", "contacts": [{ "email": "a@b.co" }, { "email": "nope" }],
                              "tags": { "t": "ABC", "u": "ok" } } }),
            json!({ "spec": { "owner": "ada@@contoso.com", "contacts": [{ "email": "@x.y" }] } }),
            json!({ "spec": {} }),
        ] {
            let mut ours = rules.check(&value);
            ours.extend(interpreter(&stripped, &value));
            let mut theirs = interpreter(&schema, &value);
            let key = |f: &Failure| (f.field.clone(), f.message.clone());
            ours.sort_by_key(key);
            theirs.sort_by_key(key);
            assert_eq!(ours, theirs, "{value}");
        }
        let bad = json!({ "spec": { "owner": "x", "contacts": [{ "email": "a@b.co" }, { "email": "nope" }] } });
        let mut fields: Vec<String> = rules.check(&bad).into_iter().map(|f| f.field).collect();
        fields.sort();
        assert_eq!(fields, ["spec.contacts[1].email", "spec.owner"]);
    }
}
