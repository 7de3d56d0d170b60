//! The README is the front door: every `sh` block in it runs, in order, in one scratch
//! folder, with `servicehub` the binary under test and the examples beside it. A block fails
//! the test when a command exits non-zero or its output lacks what the README says it shows.
//!
//! Annotations, in HTML comments just above a block (invisible on GitHub):
//! - `<!-- readme-test: skip: REASON -->` for blocks that need what a test cannot have
//!   (a cluster, Helm against a cluster);
//! - `<!-- readme-test: shows "TEXT" -->` (any number): the block's output contains TEXT.
//!
//! `cargo run --release -- ARGS` runs the binary under test (the same program, built once by
//! the test harness); other `cargo` commands (install, nextest, bench) are build and test
//! steps this test is itself part of, and are reported, not run. The placeholder `TOKEN`
//! is the token of the invitation the block names (`--account`'s invitation, found in
//! `servicehub-outbox/`).

use crate::support::{eml_files, repo, token_in};

/// One fenced `sh` block and what the README says about it.
struct Block {
    line: usize,
    script: String,
    skip: Option<String>,
    shows: Vec<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let (mut skip, mut shows) = (None, Vec::new());
    let mut lines = readme.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if let Some(note) = line.trim().strip_prefix("<!-- readme-test:").and_then(|l| l.strip_suffix("-->")) {
            let note = note.trim();
            if let Some(reason) = note.strip_prefix("skip:") {
                skip = Some(reason.trim().to_owned());
            } else if let Some(text) = note.strip_prefix("shows ") {
                shows.push(text.trim().trim_matches('"').to_owned());
            } else {
                panic!("README.md:{}: unknown readme-test annotation {note:?}", i + 1);
            }
            continue;
        }
        if let Some(info) = line.strip_prefix("```") {
            let body: Vec<&str> = lines.by_ref().map(|(_, l)| l).take_while(|l| !l.starts_with("```")).collect();
            if info.trim() == "sh" {
                out.push(Block {
                    line: i + 1,
                    script: body.join("\n"),
                    skip: skip.take(),
                    shows: std::mem::take(&mut shows),
                });
            }
            (skip, shows) = (None, Vec::new());
        } else if !line.trim().is_empty() {
            // An annotation belongs to the block right below it.
            (skip, shows) = (None, Vec::new());
        }
    }
    out
}

/// `cargo run [--release] -- ARGS` is the binary under test; other cargo commands are
/// named and skipped.
const PREAMBLE: &str = r#"
cargo() {
  if [ "$1" = run ]; then
    while [ $# -gt 0 ] && [ "$1" != -- ]; do shift; done
    shift
    servicehub "$@"
  else
    echo "readme-test: not run here: cargo $*" >&2
  fi
}
"#;

#[test]
fn every_command_block_of_the_readme_runs_and_shows_what_it_says() {
    let readme = std::fs::read_to_string(repo("README.md")).expect("README.md");
    let blocks = blocks(&readme);
    assert!(blocks.len() >= 5, "the README's command blocks were not found");
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    let bin = dir.join(".bin");
    std::fs::create_dir(&bin).expect("bin");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_servicehub"), bin.join("servicehub")).expect("link");
    for path in ["examples", "crds", "charts"] {
        std::os::unix::fs::symlink(repo(path), dir.join(path)).expect("link");
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut ran = 0;
    for b in &blocks {
        if let Some(reason) = &b.skip {
            eprintln!("README.md:{}: skipped ({reason})", b.line);
            continue;
        }
        let mut script = b.script.clone();
        if script.contains("TOKEN") {
            let account = script
                .split_whitespace()
                .skip_while(|w| *w != "--account")
                .nth(1)
                .expect("a block with TOKEN names --account")
                .to_owned();
            let messages = eml_files(&dir.join("servicehub-outbox"));
            let (_, text) = messages
                .iter()
                .find(|(_, m)| m.contains(&format!("To: {account}")))
                .unwrap_or_else(|| panic!("README.md:{}: no invitation to {account} in servicehub-outbox/", b.line));
            script = script.replace("TOKEN", &token_in(text));
        }
        let out = std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &format!("{PREAMBLE}\n{script}")])
            .current_dir(dir)
            .env("PATH", &path)
            .env("HOME", dir)
            .env("NO_COLOR", "1")
            .env_remove("SERVICEHUB_STORE")
            .env_remove("SERVICEHUB_NOTIFY_DIR")
            .env_remove("SERVICEHUB_UNSAFE_TEST_CLOCK")
            .env_remove("SERVICEHUB_LOG")
            .output()
            .expect("bash");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "README.md:{}: the block failed ({}):\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            b.line,
            out.status,
            b.script
        );
        for text in &b.shows {
            assert!(
                stdout.contains(text.as_str()),
                "README.md:{}: the README says this block shows {text:?}; it printed:\n{stdout}",
                b.line
            );
        }
        ran += 1;
    }
    assert!(ran >= 5, "only {ran} README blocks ran");
}

#[test]
fn readme_annotations_are_read_as_written() {
    let text = "<!-- readme-test: shows \"a b\" -->\n```sh\necho a b\n```\n\n<!-- readme-test: skip: cluster -->\n```sh\nkubectl get\n```\n```json\n{}\n```\n";
    let b = blocks(text);
    assert_eq!(b.len(), 2);
    assert_eq!((b[0].line, b[0].script.as_str(), b[0].shows.as_slice()), (2, "echo a b", &["a b".to_owned()][..]));
    assert_eq!(b[1].skip.as_deref(), Some("cluster"));
}
