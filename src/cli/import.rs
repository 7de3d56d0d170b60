//! `servicehub import`: the YAML that describes what the store holds for one customer, so a
//! team can start GitOps from an existing store (peribolos `--dump`). Applying the output
//! back to the same store plans nothing.
//!
//! Each object is written from the spec its row was last written from (`applied_spec`, kept
//! since migration 7), not rebuilt from the columns: those lose what the spec hash covers
//! (the order of lists, a group's display name), and a rebuilt spec would plan an update.
//! Every object carries `servicehub.io/adopt` with its store id, so the same YAML applied to
//! a cluster takes the rows over (no new invitations) instead of creating copies. Rows
//! implied by another object (the Customer's default workspace and its administrators'
//! memberships) come back from that object and are not written on their own. The
//! `managementPolicy` is written at its default (`Manage`), as the store keeps it; a paused
//! or observed object in the cluster keeps its own setting.

use super::StoreArgs;
use crate::api;
use clap::ValueEnum;
use serde_json::{Value, json};
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `servicehub import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The customer, as NAMESPACE/NAME.
    #[arg(long)]
    pub customer: String,
    /// `yaml`: multi-document YAML for `kubectl apply -f` and `servicehub apply -f`; `json`:
    /// one `v1` List.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ImportFormat::Yaml)]
    pub output: ImportFormat,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// What `import` writes.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ImportFormat {
    /// Multi-document YAML.
    Yaml,
    /// A `v1` List of the objects.
    Json,
}

/// Run `servicehub import`.
pub async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let ImportArgs { customer, output, store } = args;
    let (ns, name) = super::get::split(&customer, "customer")?;
    let db = super::open_existing_store(&store).await?;
    let snap = db.load_customer(&ns, &name).await?;
    let objects = objects(&snap).map_err(|e| anyhow::anyhow!("customer {customer}: {e}"))?;
    let mut out = std::io::stdout().lock();
    match output {
        ImportFormat::Yaml => {
            for o in &objects {
                write!(out, "---\n{}", serde_yaml::to_string(o)?)?;
            }
        }
        ImportFormat::Json => {
            let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The objects a customer's snapshot describes: the Customer, its Workspaces, Memberships
/// and Lockbox policies, each group ordered by name. An error names the rows that keep no
/// applied spec.
pub fn objects(snap: &crate::store::Snapshot) -> Result<Vec<Value>, String> {
    let Some(c) = &snap.customer else {
        return Err("not in the store (or not managed: a released customer is not imported)".to_owned());
    };
    let c = &c.record;
    let mut rows: Vec<(&str, &str, &str, &str)> = vec![("Customer", &c.name, &c.uid, &c.applied_spec)];
    let mut workspaces: Vec<_> =
        snap.workspaces.values().map(|w| &w.record).filter(|w| w.origin == "Workspace").collect();
    workspaces.sort_by(|a, b| a.name.cmp(&b.name));
    rows.extend(workspaces.iter().map(|w| ("Workspace", w.name.as_str(), w.id.as_str(), w.applied_spec.as_str())));
    let mut memberships: Vec<_> =
        snap.memberships.values().map(|m| &m.record).filter(|m| m.origin == "Membership").collect();
    memberships.sort_by(|a, b| a.name.cmp(&b.name));
    rows.extend(memberships.iter().map(|m| ("Membership", m.name.as_str(), m.id.as_str(), m.applied_spec.as_str())));
    let mut policies: Vec<_> = snap.policies.values().map(|p| &p.record).collect();
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    rows.extend(policies.iter().map(|p| ("LockboxPolicy", p.name.as_str(), p.uid.as_str(), p.applied_spec.as_str())));

    let missing: Vec<String> =
        rows.iter().filter(|r| r.3.is_empty()).map(|(kind, name, _, _)| format!("{kind} {name}")).collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} stored before servicehub kept applied specs: {}; apply them once (or let the operator reconcile \
             them) and import again",
            if missing.len() == 1 { "this row was" } else { "these rows were" },
            missing.join(", ")
        ));
    }
    rows.into_iter()
        .map(|(kind, name, id, spec)| {
            let spec: Value =
                serde_json::from_str(spec).map_err(|e| format!("{kind} {name}: the stored spec is not JSON: {e}"))?;
            Ok(json!({
                "apiVersion": api::API_VERSION,
                "kind": kind,
                "metadata": {
                    "name": name,
                    "namespace": c.namespace,
                    "annotations": { api::ADOPT_ANNOTATION: id },
                },
                "spec": spec,
            }))
        })
        .collect()
}
