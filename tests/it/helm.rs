//! The chart rendered by the real Helm v3 CLI (`helm lint`, `helm template`) with the default
//! values and every documented combination, and the rendered objects checked: RBAC equal to
//! `files/`, the security context, the probes, the store and transport settings, no
//! placeholder text. `.ci/run` installs Helm (see there); elsewhere the binary is found as
//! `SERVICEHUB_HELM` or `helm` on the PATH, and these tests are skipped with a printed reason
//! when it is missing, except in CI.

use crate::support::repo;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;

fn helm() -> Option<PathBuf> {
    let candidate = std::env::var_os("SERVICEHUB_HELM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("helm"));
    match Command::new(&candidate).arg("version").arg("--short").output() {
        Ok(out) if out.status.success() => Some(candidate),
        other if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: no Helm binary ({other:?}); set SERVICEHUB_HELM or put helm on the PATH");
            None
        }
        other => panic!("Helm is required in CI (.ci/run installs it): {other:?}"),
    }
}

fn chart() -> PathBuf {
    repo("charts/servicehub-operator")
}

/// The documented combinations of values, each as a patch over `values.yaml`.
fn combinations() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        (
            "postgres-replicas",
            json!({ "replicaCount": 3, "store": { "type": "postgres", "postgres": { "existingSecret": "servicehub-db" } } }),
        ),
        ("watch-namespace", json!({ "watchNamespace": "team-a" })),
        (
            "smtp",
            json!({ "notifications": { "transport": "smtp", "smtp": { "host": "smtp.example.com", "existingSecret": "smtp-auth" } } }),
        ),
        (
            "webhook",
            json!({ "notifications": { "transport": "webhook", "webhook": { "url": "https://hooks.example.com/servicehub", "existingSecret": "hook" } } }),
        ),
        ("file", json!({ "notifications": { "transport": "file" } })),
        ("none", json!({ "notifications": { "transport": "none" } })),
        ("network-policy", json!({ "networkPolicy": { "enabled": true, "apiServerCIDRs": ["10.0.0.1/32"] } })),
        (
            "console",
            json!({
                "console": {
                    "enabled": true,
                    "baseUrl": "https://hub.contoso.com",
                    "oidc": { "issuer": "https://login.microsoftonline.com/t/v2.0", "clientId": "app", "existingSecret": "oidc" },
                    "ingress": { "enabled": true, "className": "nginx", "tlsSecretName": "hub-tls" },
                },
                "networkPolicy": { "enabled": true, "consoleNamespaceSelector": { "name": "ingress" } },
            }),
        ),
        (
            "service-monitor",
            json!({ "metrics": { "serviceMonitor": { "enabled": true, "labels": { "release": "prom" } } } }),
        ),
    ]
}

fn run(helm: &PathBuf, args: &[&str], values: &Value) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).expect("values");
    let out = Command::new(helm)
        .args(args)
        .arg(chart())
        .arg("-f")
        .arg(&file)
        .env("HELM_CACHE_HOME", dir.path().join("cache"))
        .env("HELM_CONFIG_HOME", dir.path().join("config"))
        .env("HELM_DATA_HOME", dir.path().join("data"))
        .output()
        .expect("run helm");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn render(helm: &PathBuf, values: &Value) -> Vec<Value> {
    let (ok, text) = run(helm, &["template", "rel", "--namespace", "servicehub"], values);
    assert!(ok, "helm template failed for {values}:\n{text}");
    assert!(!text.contains("<this chart") && !text.contains("https://<"), "placeholder text rendered:\n{text}");
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn env_of(deploy: &Value) -> Vec<(String, Value)> {
    deploy["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("name").to_owned(),
                e.get("value").cloned().unwrap_or_else(|| e["valueFrom"].clone()),
            )
        })
        .collect()
}

fn env(deploy: &Value, name: &str) -> Option<Value> {
    env_of(deploy).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn rules(file: &str) -> Value {
    let text = std::fs::read_to_string(chart().join("files").join(file)).expect("rules file");
    serde_yaml::from_str(&text).expect("rules yaml")
}

#[test]
fn helm_lint_accepts_the_chart_with_every_documented_combination() {
    let Some(helm) = helm() else { return };
    for (name, values) in combinations() {
        let (ok, text) = run(&helm, &["lint", "--strict"], &values);
        assert!(ok && !text.contains("[ERROR]"), "{name}: helm lint:\n{text}");
    }
    // The schema is enforced by Helm itself: several replicas on SQLite are refused.
    let (ok, text) = run(&helm, &["template", "rel"], &json!({ "replicaCount": 2 }));
    assert!(!ok, "several replicas on SQLite must be refused:\n{text}");
    assert!(text.contains("values don't meet the specifications of the schema"), "{text}");
}

#[test]
fn helm_template_renders_what_each_combination_promises() {
    let Some(helm) = helm() else { return };
    for (name, values) in combinations() {
        let objects = render(&helm, &values);
        let deploys = find(&objects, "Deployment");
        assert_eq!(deploys.len(), 1, "{name}");
        let d = deploys[0];
        for o in &objects {
            // The CRDs are in crds/ (installed unrendered, and checked against crds/ by
            // chart.rs); the chart renders no custom resource of its own. One added later
            // must be checked against the CRD schemas here.
            let group = o["apiVersion"].as_str().unwrap_or_default();
            assert!(!group.starts_with("servicehub.io/"), "{name}: the chart renders a {group} object: validate it");
            assert!(o["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("rel-")), "{name}: {o}");
            assert_eq!(o["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm", "{name}: {}", o["kind"]);
        }

        // Security context and probes.
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]), "{name}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{name}: a memory limit");
        assert!(
            pod["terminationGracePeriodSeconds"].as_i64().is_some_and(|s| s > 15),
            "{name}: longer than --shutdown-timeout"
        );
        assert_eq!(c["args"], json!(["run"]), "{name}");

        // RBAC: exactly the rules in files/ (which another test checks against the calls
        // the controller makes); namespaced Roles when one namespace is watched.
        let watched = values["watchNamespace"].as_str();
        let operator_role = objects
            .iter()
            .find(|o| {
                (o["kind"] == "ClusterRole" || o["kind"] == "Role") && o["rules"] == rules("rbac-operator-rules.yaml")
            })
            .unwrap_or_else(|| panic!("{name}: no role with the rules of files/rbac-operator-rules.yaml"));
        match watched {
            Some(ns) => {
                assert_eq!(operator_role["kind"], "Role", "{name}");
                assert_eq!(operator_role["metadata"]["namespace"], ns, "{name}");
                assert!(find(&objects, "ClusterRole").is_empty(), "{name}: no cluster-wide rights");
                assert_eq!(env(d, "SERVICEHUB_WATCH_NAMESPACE"), Some(json!(ns)), "{name}");
            }
            None => assert_eq!(operator_role["kind"], "ClusterRole", "{name}"),
        }
        let election = objects
            .iter()
            .find(|o| o["kind"] == "Role" && o["rules"] == rules("rbac-leader-election-rules.yaml"))
            .unwrap_or_else(|| panic!("{name}: no leader-election Role"));
        assert_eq!(election["metadata"]["namespace"], "servicehub", "{name}");
        for binding in find(&objects, "RoleBinding").into_iter().chain(find(&objects, "ClusterRoleBinding")) {
            assert_eq!(binding["subjects"][0]["name"], d["spec"]["template"]["spec"]["serviceAccountName"], "{name}");
        }

        // The store, replicas and leader election.
        let replicas = values["replicaCount"].as_i64().unwrap_or(1);
        assert_eq!(d["spec"]["replicas"], replicas, "{name}");
        assert_eq!(env(d, "SERVICEHUB_LEADER_ELECT"), Some(json!((replicas > 1).to_string())), "{name}");
        if values["store"]["type"] == "postgres" {
            let url = env(d, "SERVICEHUB_STORE").expect("store");
            assert_eq!(url["secretKeyRef"]["name"], "servicehub-db", "{name}: the URL comes from the Secret");
            assert!(find(&objects, "PersistentVolumeClaim").is_empty(), "{name}");
            assert_eq!(find(&objects, "PodDisruptionBudget").len(), 1, "{name}");
            assert_ne!(d["spec"]["strategy"]["type"], "Recreate", "{name}");
        } else {
            assert_eq!(env(d, "SERVICEHUB_STORE"), Some(json!("sqlite:///data/servicehub.db")), "{name}");
            assert_eq!(find(&objects, "PersistentVolumeClaim").len(), 1, "{name}");
            assert_eq!(d["spec"]["strategy"]["type"], "Recreate", "{name}: one writer on the volume");
        }

        // Transports.
        let transport = values["notifications"]["transport"].as_str().unwrap_or("file");
        assert_eq!(env(d, "SERVICEHUB_NOTIFY_TRANSPORT"), Some(json!(transport)), "{name}");
        match transport {
            "smtp" => {
                assert_eq!(env(d, "SERVICEHUB_SMTP_HOST"), Some(json!("smtp.example.com")), "{name}");
                let password = env(d, "SERVICEHUB_SMTP_PASSWORD").expect("password");
                assert_eq!(password["secretKeyRef"]["name"], "smtp-auth", "{name}: from the Secret, never a value");
            }
            "webhook" => {
                assert_eq!(
                    env(d, "SERVICEHUB_WEBHOOK_URL"),
                    Some(json!("https://hooks.example.com/servicehub")),
                    "{name}"
                );
                assert_eq!(
                    env(d, "SERVICEHUB_WEBHOOK_SECRET").expect("secret")["secretKeyRef"]["name"],
                    "hook",
                    "{name}"
                );
            }
            _ => {
                assert!(
                    env(d, "SERVICEHUB_SMTP_HOST").is_none() && env(d, "SERVICEHUB_WEBHOOK_URL").is_none(),
                    "{name}"
                );
            }
        }
        // No secret value is ever rendered in plain text.
        for (n, v) in env_of(d) {
            if n.contains("PASSWORD") || n.contains("SECRET") {
                assert!(v.get("secretKeyRef").is_some(), "{name}: {n} must come from a Secret, not {v}");
            }
        }

        // Optional objects.
        let policy = find(&objects, "NetworkPolicy");
        assert_eq!(policy.len(), usize::from(values["networkPolicy"]["enabled"] == true), "{name}");
        if let Some(p) = policy.first() {
            let ports: Vec<i64> = p["spec"]["ingress"][0]["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .filter_map(|p| p["port"].as_i64())
                .collect();
            assert_eq!(ports, vec![8080], "{name}: ingress only to the HTTP port");
        }
        // The console: its own port and Service, the Ingress for the base URL's host, the
        // policy opening its port to the ingress controller's namespace; off by default.
        let console = values["console"]["enabled"] == true;
        let services: Vec<&str> =
            find(&objects, "Service").iter().filter_map(|s| s["metadata"]["name"].as_str()).collect();
        assert_eq!(services.contains(&"rel-servicehub-operator-console"), console, "{name}: {services:?}");
        assert_eq!(env(d, "SERVICEHUB_CONSOLE").is_some(), console, "{name}");
        if console {
            assert_eq!(env(d, "SERVICEHUB_CONSOLE_ADDR"), Some(json!("0.0.0.0:8090")), "{name}");
            assert_eq!(env(d, "SERVICEHUB_CONSOLE_BASE_URL"), Some(json!("https://hub.contoso.com")), "{name}");
            let secret = env_of(d).into_iter().find(|(n, _)| n == "SERVICEHUB_OIDC_CLIENT_SECRET").expect("secret");
            assert_eq!(secret.1["secretKeyRef"]["name"], "oidc", "{name}");
            let ports = &d["spec"]["template"]["spec"]["containers"][0]["ports"];
            assert!(ports.as_array().is_some_and(|p| p.iter().any(|p| p["name"] == "console")), "{name}: {ports}");
            let ingress = find(&objects, "Ingress");
            assert_eq!(ingress.len(), 1, "{name}");
            assert_eq!(ingress[0]["spec"]["rules"][0]["host"], "hub.contoso.com", "{name}");
            assert_eq!(ingress[0]["spec"]["tls"][0]["secretName"], "hub-tls", "{name}");
            let p = policy.first().expect("policy");
            assert_eq!(p["spec"]["ingress"][1]["ports"][0]["port"], 8090, "{name}");
            assert_eq!(p["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["name"], "ingress");
        } else {
            assert!(find(&objects, "Ingress").is_empty(), "{name}");
        }
        let monitors = find(&objects, "ServiceMonitor");
        assert_eq!(monitors.len(), usize::from(values["metrics"]["serviceMonitor"]["enabled"] == true), "{name}");
        if let Some(m) = monitors.first() {
            assert_eq!(m["metadata"]["labels"]["release"], "prom", "{name}");
        }
    }
}

/// NOTES.txt is not rendered by `helm template` (and `helm install --dry-run` needs a
/// cluster), so its source is checked for placeholders left for the author.
#[test]
fn the_notes_hold_no_placeholder() {
    let notes = std::fs::read_to_string(chart().join("templates/NOTES.txt")).expect("NOTES.txt");
    for bad in ["<this chart", "https://<", "TODO", "FIXME"] {
        assert!(!notes.contains(bad), "NOTES.txt contains {bad:?}");
    }
    assert!(notes.contains("kubectl apply -f charts/servicehub-operator/crds/"), "{notes}");
}
