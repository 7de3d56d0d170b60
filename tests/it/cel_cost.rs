//! The API server's CEL cost budget, checked without an API server.
//!
//! kube-apiserver refuses a CRD whose `x-kubernetes-validations` rules are too expensive in
//! the worst case: each rule's estimated cost, multiplied by the largest number of times it
//! can run in one object (the `maxItems` of every enclosing list, the `maxProperties` of
//! every enclosing map), must stay under `StaticEstimatedCostLimit` (10,000,000), and the
//! sum over the CRD under `StaticEstimatedCRDCostLimit` (100,000,000). The emulation does
//! not compute this, so a CRD it accepts may still be refused by a real cluster: the
//! Customer CRD was, by kube-apiserver v1.36, at 1.8x the limit.
//!
//! The estimator below follows the cost model of cel-go's `checker/cost.go` as used by
//! the API server (`k8s.io/apiserver/pkg/cel`), for what our rules use:
//! - identifiers and field selections (also `has()`) cost 1, literals 0, a list literal 10
//!   plus its elements;
//! - a call of an O(1) function costs 1 plus its arguments; `&&`, `||` and `?:` cost their
//!   arguments (both branches, the worse one for `?:`);
//! - comparisons cost the traversal of the smaller operand (size x 0.1, rounded up);
//! - `matches` costs ceil((size(string) + 1) x 0.1) x ceil(size(regex) x 0.25);
//!   `contains`, `startsWith` and `endsWith` the traversal of the string;
//! - `x in list` costs the list's size; a comprehension (`all`, `exists`, `map`, `filter`)
//!   costs its range, plus size(range) x (its condition + its step);
//! - the size of a string with `maxLength: L` is 4L bytes (a code point may take 4 bytes),
//!   of an enum string its longest value, of a list its `maxItems`; unbounded strings and
//!   lists are sized by the 3 MiB request limit, as the API server does.
//!
//! Where the model is unsure it over-estimates, and a function it does not know fails the
//! test rather than being priced at 1. The test fails above half of each limit, so a rule
//! added later has room and the estimate's imprecision has a margin.

use cel::common::ast::{Expr, IdedExpr, LiteralValue};
use serde_json::Value;
use std::collections::HashMap;

use crate::support::repo;

/// `StaticEstimatedCostLimit`: the most one rule may cost, times its cardinality.
const RULE_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: the most all rules of a CRD may cost together.
const CRD_LIMIT: u64 = 100_000_000;
/// The API server's request size limit, which bounds whatever a schema leaves unbounded.
const MAX_REQUEST_BYTES: u64 = 3 * 1024 * 1024;

const STRING_TRAVERSAL: f64 = 0.1;
const REGEX_LENGTH: f64 = 0.25;
const LIST_CREATE: u64 = 10;
const MAP_CREATE: u64 = 30;

fn factor(size: u64, f: f64) -> u64 {
    (size as f64 * f).ceil() as u64
}

/// What an expression evaluates to, as far as its size matters.
#[derive(Clone, Debug)]
enum Ty<'a> {
    /// A value described by a schema node.
    Node(&'a Value),
    /// A string of known size (a literal).
    Str(u64),
    /// A list of at most `n` elements of the given type.
    List(u64, Box<Ty<'a>>),
    /// A scalar: size 1.
    Scalar,
}

/// The largest size of a value, in the units cel-go's estimator uses (bytes for strings,
/// elements for lists and maps).
fn size(t: &Ty) -> u64 {
    match t {
        Ty::Str(n) | Ty::List(n, _) => *n,
        Ty::Scalar => 1,
        Ty::Node(node) => node_size(node),
    }
}

fn node_size(node: &Value) -> u64 {
    match node["type"].as_str() {
        Some("string") => {
            if matches!(node["format"].as_str(), Some("date" | "date-time" | "duration")) {
                // The API server turns these into timestamps and durations: scalars.
                1
            } else if let Some(max) = node["maxLength"].as_u64() {
                max * 4
            } else if let Some(values) = node["enum"].as_array() {
                values.iter().filter_map(Value::as_str).map(|v| v.len() as u64).max().unwrap_or(0)
            } else {
                MAX_REQUEST_BYTES - 2
            }
        }
        Some("array") => node["maxItems"].as_u64().unwrap_or_else(|| unbounded_count(&node["items"])),
        Some("object") if node.get("additionalProperties").is_some() => {
            node["maxProperties"].as_u64().unwrap_or_else(|| unbounded_count(&node["additionalProperties"]))
        }
        // A structured object: compared field by field, so its size is that of its fields.
        Some("object") => node["properties"].as_object().map(|p| p.values().map(node_size).sum()).unwrap_or(1),
        _ => 1,
    }
}

/// How many elements fit in one request when a list or map declares no bound: the request
/// size over the smallest serialized element (plus its separator).
fn unbounded_count(item: &Value) -> u64 {
    let min = match item["type"].as_str() {
        Some("string") => 2 + item["minLength"].as_u64().unwrap_or(0),
        Some("boolean") => 4,
        _ => 1,
    };
    MAX_REQUEST_BYTES / (min + 1)
}

/// The element type of a list (or the key type of a map) being iterated.
fn element<'a>(t: &Ty<'a>) -> Ty<'a> {
    match t {
        Ty::List(_, e) => (**e).clone(),
        Ty::Node(node) if node["type"] == "array" => Ty::Node(&node["items"]),
        // Map keys are strings the schema does not bound.
        Ty::Node(_) => Ty::Str(MAX_REQUEST_BYTES - 2),
        other => panic!("cannot iterate over {other:?}"),
    }
}

struct Estimator<'a> {
    vars: HashMap<String, Ty<'a>>,
}

impl<'a> Estimator<'a> {
    fn ty(&self, e: &IdedExpr) -> Ty<'a> {
        match &e.expr {
            Expr::Ident(name) => self.vars.get(name).cloned().unwrap_or_else(|| panic!("unknown identifier {name}")),
            Expr::Select(s) if s.test => Ty::Scalar,
            Expr::Select(s) => match self.ty(&s.operand) {
                Ty::Node(node) if node["properties"].get(&s.field).is_some() => Ty::Node(&node["properties"][&s.field]),
                Ty::Node(node) if node.get("additionalProperties").is_some() => Ty::Node(&node["additionalProperties"]),
                other => panic!("no field {} in {other:?}", s.field),
            },
            Expr::Literal(LiteralValue::String(s)) => Ty::Str(s.inner().chars().count() as u64),
            Expr::Literal(_) => Ty::Scalar,
            Expr::List(l) => {
                let elem = l.elements.iter().map(|e| self.ty(e)).max_by_key(size).unwrap_or(Ty::Scalar);
                Ty::List(l.elements.len() as u64, Box::new(elem))
            }
            Expr::Call(c) if c.func_name == "_?_:_" => {
                let (a, b) = (self.ty(&c.args[1]), self.ty(&c.args[2]));
                if size(&a) >= size(&b) { a } else { b }
            }
            // Everything else our rules call returns a bool, an int or a duration.
            Expr::Call(_) => Ty::Scalar,
            Expr::Comprehension(c) => match &c.accu_init.expr {
                Expr::List(_) => Ty::List(size(&self.ty(&c.iter_range)), Box::new(element(&self.ty(&c.iter_range)))),
                _ => Ty::Scalar,
            },
            other => panic!("the cost model does not cover {other:?}"),
        }
    }

    fn cost(&mut self, e: &IdedExpr) -> u64 {
        match &e.expr {
            Expr::Ident(_) => 1,
            Expr::Select(s) => 1 + self.cost(&s.operand),
            Expr::Literal(_) => 0,
            Expr::List(l) => LIST_CREATE + l.elements.iter().map(|e| self.cost(e)).sum::<u64>(),
            Expr::Map(m) => MAP_CREATE + m.entries.len() as u64 * 2,
            Expr::Call(c) => {
                let mut args: Vec<&IdedExpr> = c.target.iter().map(|t| &**t).collect();
                args.extend(c.args.iter());
                let arg_costs: Vec<u64> = args.iter().map(|a| self.cost(a)).collect();
                let sum: u64 = arg_costs.iter().sum();
                match (c.func_name.as_str(), args.len()) {
                    ("_&&_" | "_||_", 2) => sum,
                    ("_?_:_", 3) => arg_costs[0] + arg_costs[1].max(arg_costs[2]),
                    ("_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_", 2) => {
                        let smaller = size(&self.ty(args[0])).min(size(&self.ty(args[1])));
                        factor(smaller, STRING_TRAVERSAL) + sum
                    }
                    ("matches", 2) => {
                        let string = factor(size(&self.ty(args[0])) + 1, STRING_TRAVERSAL);
                        let regex = factor(size(&self.ty(args[1])), REGEX_LENGTH);
                        string * regex + sum
                    }
                    ("contains" | "startsWith" | "endsWith", 2) => {
                        factor(size(&self.ty(args[0])), STRING_TRAVERSAL)
                            * factor(size(&self.ty(args[1])), STRING_TRAVERSAL).max(1)
                            + sum
                    }
                    ("@in", 2) => size(&self.ty(args[1])) + sum,
                    // Parsing a duration or timestamp reads its text: over-estimated as a
                    // traversal of the whole string, although cel-go prices it at 1.
                    ("duration" | "timestamp", 1) => 1 + factor(size(&self.ty(args[0])), STRING_TRAVERSAL) + sum,
                    ("size" | "!_" | "-_" | "@not_strictly_false" | "int" | "uint" | "double" | "string", 1) => 1 + sum,
                    ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", 2) => 1 + sum,
                    (f, n) => {
                        panic!("the cost model does not know {f} with {n} arguments: add it from cel-go's cost.go")
                    }
                }
            }
            Expr::Comprehension(c) => {
                let range = self.ty(&c.iter_range);
                let count = size(&range);
                let fixed = self.cost(&c.iter_range) + self.cost(&c.accu_init);
                let accu = self.ty(&c.accu_init);
                let saved = [
                    (c.iter_var.clone(), self.vars.insert(c.iter_var.clone(), element(&range))),
                    (c.accu_var.clone(), self.vars.insert(c.accu_var.clone(), accu)),
                ];
                let per_item = self.cost(&c.loop_cond) + self.cost(&c.loop_step);
                let result = self.cost(&c.result);
                for (name, old) in saved {
                    match old {
                        Some(t) => self.vars.insert(name, t),
                        None => self.vars.remove(&name),
                    };
                }
                fixed + result + count.saturating_mul(per_item)
            }
            other => panic!("the cost model does not cover {other:?}"),
        }
    }
}

/// The worst-case cost of `rule` evaluated once at `node` (`self` and `oldSelf` both the node).
fn rule_cost(rule: &str, node: &Value) -> u64 {
    let ast = cel::parser::Parser::new().parse(rule).unwrap_or_else(|e| panic!("{rule}: {e:?}"));
    let mut est = Estimator { vars: HashMap::new() };
    est.vars.insert("self".into(), Ty::Node(node));
    est.vars.insert("oldSelf".into(), Ty::Node(node));
    est.cost(&ast)
}

/// One rule: where it is, how often it can run, and what one run costs.
#[derive(Debug)]
struct Priced {
    path: String,
    rule: String,
    cardinality: u64,
    cost: u64,
}

impl Priced {
    fn total(&self) -> u64 {
        self.cost.saturating_mul(self.cardinality)
    }
}

/// Every rule under `node`, priced; `cardinality` is how many times `node` can occur.
fn price(path: &str, node: &Value, cardinality: u64, out: &mut Vec<Priced>) {
    for rule in node["x-kubernetes-validations"].as_array().into_iter().flatten() {
        let rule = rule["rule"].as_str().expect("rule text");
        out.push(Priced { path: path.to_owned(), rule: rule.to_owned(), cardinality, cost: rule_cost(rule, node) });
    }
    if let Some(props) = node["properties"].as_object() {
        for (k, v) in props {
            price(&format!("{path}.{k}"), v, cardinality, out);
        }
    }
    if node.get("items").is_some() {
        price(&format!("{path}[*]"), &node["items"], cardinality.saturating_mul(node_size(node)), out);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        price(&format!("{path}[*]"), values, cardinality.saturating_mul(node_size(node)), out);
    }
}

fn priced_crd(crd: &Value) -> Vec<Priced> {
    let mut out = Vec::new();
    for version in crd["spec"]["versions"].as_array().expect("versions") {
        price("", &version["schema"]["openAPIV3Schema"], 1, &mut out);
    }
    out
}

fn committed_crds() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(repo("crds"))
        .expect("crds/")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            (p.file_name().expect("name").to_string_lossy().into_owned(), serde_yaml::from_str(&text).expect("yaml"))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The model reproduces what a real kube-apiserver (v1.36) answered for the Customer CRD as
/// it was: the subscriber email rule (`maxLength: 254`, in `maxItems: 500` subscribers of
/// `maxItems: 50` newsletters) "exceeds budget by factor of 1.8x".
#[test]
fn the_model_reproduces_the_api_servers_refusal_of_the_old_customer_crd() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"newsletters": {
            "type": "array", "maxItems": 50,
            "items": {"type": "object", "properties": {"subscribers": {
                "type": "array", "maxItems": 500,
                "items": {"type": "string", "minLength": 3, "maxLength": 254, "x-kubernetes-validations": [
                    {"rule": servicehub_operator::api::EMAIL_RULE}
                ]}
            }}}
        }}}}
    });
    let mut priced = Vec::new();
    price("", &schema, 1, &mut priced);
    assert_eq!(priced.len(), 1);
    let p = &priced[0];
    assert_eq!(p.cardinality, 25_000);
    // ceil(1017 x 0.1) = 102 for the string, ceil(27 x 0.25) = 7 for the regex, 1 for `self`.
    assert_eq!(p.cost, 715);
    let ratio = p.total() as f64 / RULE_LIMIT as f64;
    assert_eq!(format!("{ratio:.1}"), "1.8", "the API server reported 1.8x; the model says {ratio:.3}x");
}

/// Every rule of every generated CRD is at most half the API server's per-rule limit, and
/// each CRD at most half its per-CRD limit, so `kubectl apply -f crds/` is accepted.
#[test]
fn every_rule_of_every_crd_fits_half_the_api_servers_cost_budget() {
    let crds = committed_crds();
    assert_eq!(crds.len(), 4, "all four CRDs are checked");
    let mut problems = Vec::new();
    let mut rules = 0;
    for (file, crd) in &crds {
        let priced = priced_crd(crd);
        rules += priced.len();
        for p in &priced {
            if p.total() > RULE_LIMIT / 2 {
                problems.push(format!(
                    "{file}{}: {} costs {} x {} = {} (limit {RULE_LIMIT}, half {})",
                    p.path,
                    p.rule,
                    p.cost,
                    p.cardinality,
                    p.total(),
                    RULE_LIMIT / 2
                ));
            }
        }
        let sum: u64 = priced.iter().map(Priced::total).fold(0, u64::saturating_add);
        if sum > CRD_LIMIT / 2 {
            problems.push(format!("{file}: all rules together cost {sum} (limit {CRD_LIMIT}, half {})", CRD_LIMIT / 2));
        }
        let worst = priced.iter().max_by_key(|p| p.total()).expect("each CRD has rules");
        println!(
            "{file}: {} rules, total {sum}, worst {} at {} ({:.1}% of the per-rule limit)",
            priced.len(),
            worst.total(),
            worst.path,
            worst.total() as f64 * 100.0 / RULE_LIMIT as f64
        );
    }
    assert!(rules >= 20, "the walk found the rules ({rules})");
    assert!(problems.is_empty(), "rules over half the API server's CEL cost budget:\n{}", problems.join("\n"));
}

/// Every list and map that encloses a rule declares its bound: without one the API server
/// sizes it by the request limit and the rule's estimate explodes.
#[test]
fn every_list_and_map_in_the_crds_is_bounded() {
    fn walk(path: &str, node: &Value, problems: &mut Vec<String>) {
        if node["type"] == "array" && node.get("maxItems").is_none() {
            problems.push(format!("{path}: array without maxItems"));
        }
        if node["type"] == "string" && node.get("maxLength").is_none() && node.get("enum").is_none() {
            let formatted = matches!(node["format"].as_str(), Some("date" | "date-time" | "duration"));
            if !formatted {
                problems.push(format!("{path}: string without maxLength or enum"));
            }
        }
        if let Some(props) = node["properties"].as_object() {
            for (k, v) in props {
                walk(&format!("{path}.{k}"), v, problems);
            }
        }
        if node.get("items").is_some() {
            walk(&format!("{path}[*]"), &node["items"], problems);
        }
    }
    let mut problems = Vec::new();
    for (file, crd) in committed_crds() {
        for version in crd["spec"]["versions"].as_array().expect("versions") {
            // Status is written by the operator, never validated by rules; spec is what users write.
            walk(&format!("{file}: spec"), &version["schema"]["openAPIV3Schema"]["properties"]["spec"], &mut problems);
        }
    }
    assert!(problems.is_empty(), "unbounded fields in spec:\n{}", problems.join("\n"));
}
