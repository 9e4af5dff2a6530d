//! The action contract: `action.yml` and the binary agree. The inputs it declares are exactly
//! the ones the binary reads (`ACTION_INPUTS`), its outputs are exactly the ones the binary
//! writes, and the binary, started the way GitHub starts a Docker action (no arguments; an
//! `INPUT_<NAME>` for every input, defaults included, hyphens kept; the `GITHUB_*` variables; the
//! output and job-summary files), deploys to a real sshd and reports through those files.
//!
//! The deploy test runs the host binary. With `TJ_IMAGE` set (by `.ci/image-test`), the same
//! test runs the action image instead, through `TJ_CONTAINER_RUN` (a `docker run`-like prefix,
//! e.g. `podman run --rm --network host`), with GitHub's mounts and `-e NAME` passing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::{Run, Sandbox, repo, sha};
use tj_deploy::config::inputs::ACTION_INPUTS;

/// The step outputs of DESIGN.md §2, as `src/actions.rs` writes them.
const BINARY_OUTPUTS: [&str; 6] = [
    "status",
    "release",
    "backup",
    "commit",
    "environment-url",
    "duration-seconds",
];

/// Inputs whose values are secrets: their descriptions must say so.
const SECRET_INPUTS: [&str; 3] = ["ssh-key", "github-token", "slack-webhook"];

/// One input or output of action.yml: its properties (`description`, `default`, ...).
#[derive(Debug, Default)]
struct Entry {
    props: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct ActionYml {
    top: BTreeMap<String, String>,
    inputs: BTreeMap<String, Entry>,
    outputs: BTreeMap<String, Entry>,
    runs: BTreeMap<String, String>,
    branding: BTreeMap<String, String>,
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// Parses action.yml line by line. It is our own file, written in a fixed shape: top-level keys
/// at column 0, inputs/outputs at 2 spaces, their properties at 4, one `key: value` per line
/// (a `>-` block only for the top-level description).
fn parse_action_yml(text: &str) -> ActionYml {
    let mut a = ActionYml::default();
    let mut section = String::new();
    let mut entry = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let Some((key, value)) = line.trim().split_once(':') else {
            // Continuation of a folded block (the top-level description).
            assert!(indent > 0, "action.yml:{}: cannot parse {line:?}", n + 1);
            continue;
        };
        let (key, value) = (key.trim().to_string(), unquote(value));
        match indent {
            0 => {
                section = key.clone();
                a.top.insert(key, value);
            }
            2 => match section.as_str() {
                "inputs" | "outputs" => {
                    assert!(value.is_empty(), "action.yml:{}: {key} must be a mapping", n + 1);
                    entry = key.clone();
                    let map = if section == "inputs" {
                        &mut a.inputs
                    } else {
                        &mut a.outputs
                    };
                    assert!(
                        map.insert(key.clone(), Entry::default()).is_none(),
                        "action.yml:{}: {section}.{key} declared twice",
                        n + 1
                    );
                }
                "runs" => {
                    a.runs.insert(key, value);
                }
                "branding" => {
                    a.branding.insert(key, value);
                }
                _ => {}
            },
            4 => {
                let map = match section.as_str() {
                    "inputs" => &mut a.inputs,
                    "outputs" => &mut a.outputs,
                    _ => continue,
                };
                map.get_mut(&entry)
                    .unwrap_or_else(|| panic!("action.yml:{}: property outside an entry", n + 1))
                    .props
                    .insert(key, value);
            }
            _ => {}
        }
    }
    a
}

fn action_yml() -> ActionYml {
    let path = repo().join("action.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse_action_yml(&text)
}

fn set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names.into_iter().map(str::to_string).collect()
}

/// Fails naming what only one side has.
#[track_caller]
fn assert_same_names(what: &str, declared: &BTreeSet<String>, binary: &BTreeSet<String>) {
    let only_declared: Vec<_> = declared.difference(binary).collect();
    let only_binary: Vec<_> = binary.difference(declared).collect();
    assert!(
        only_declared.is_empty() && only_binary.is_empty(),
        "{what}: only in action.yml: {only_declared:?}; only in the binary: {only_binary:?} \
         (action.yml and the binary must agree)"
    );
}

#[test]
fn declared_inputs_are_exactly_the_inputs_the_binary_reads() {
    let a = action_yml();
    assert_same_names("inputs", &a.inputs.keys().cloned().collect(), &set(ACTION_INPUTS));
}

#[test]
fn declared_outputs_are_exactly_the_outputs_the_binary_writes() {
    let a = action_yml();
    assert_same_names("outputs", &a.outputs.keys().cloned().collect(), &set(BINARY_OUTPUTS));
}

#[test]
fn action_metadata_follows_githubs_conventions() {
    let a = action_yml();
    for key in ["name", "description", "author", "branding", "inputs", "outputs", "runs"] {
        assert!(a.top.contains_key(key), "action.yml: missing {key}");
    }
    assert!(a.branding.contains_key("icon") && a.branding.contains_key("color"));
    for (name, e) in &a.inputs {
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            "input {name}: kebab-case"
        );
        assert!(
            !e.props.get("description").is_none_or(String::is_empty),
            "input {name}: description"
        );
        assert!(e.props.contains_key("default"), "input {name}: default");
        let secret = e.props["description"].starts_with("Secret:");
        assert_eq!(
            secret,
            SECRET_INPUTS.contains(&name.as_str()),
            "input {name}: a secret's description (and only a secret's) starts with \"Secret:\""
        );
    }
    for (name, e) in &a.outputs {
        assert!(
            !e.props.get("description").is_none_or(String::is_empty),
            "output {name}: description"
        );
    }
    assert_eq!(a.runs.get("using").map(String::as_str), Some("docker"));
    let image = a.runs.get("image").cloned().unwrap_or_default();
    assert!(
        image.starts_with("docker://ghcr.io/") && image.ends_with(":v1"),
        "runs.image must be the prebuilt image (docker://ghcr.io/…:v1), not a Dockerfile: {image}"
    );
    assert!(
        !a.runs.contains_key("args"),
        "no args: the binary reads its inputs from INPUT_*"
    );
}

/// The value GitHub gives an input's default. `${{ github.token }}` evaluates on GitHub; here
/// there is no token (empty = unset), so GitHub features are skipped.
fn evaluated_default(input: &str, default: &str) -> String {
    match default {
        "${{ github.token }}" => String::new(),
        d if d.contains("${{") => panic!("input {input}: no test value for the default expression {d}"),
        d => d.to_string(),
    }
}

/// What GitHub's runner provides to a Docker action: directories mounted into the container
/// (`/github/workspace` as the working directory, `/github/home` as HOME, `/github/workflow`
/// with the event payload, `/github/file_commands` with the output and summary files).
struct RunnerDirs {
    root: PathBuf,
}

impl RunnerDirs {
    const MOUNTS: [(&'static str, &'static str); 4] = [
        ("workspace", "/github/workspace"),
        ("home", "/github/home"),
        ("workflow", "/github/workflow"),
        ("file_commands", "/github/file_commands"),
    ];

    fn new(root: PathBuf) -> Self {
        for (dir, _) in Self::MOUNTS {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        RunnerDirs { root }
    }

    fn host(&self, dir: &str) -> PathBuf {
        self.root.join(dir)
    }

    /// The path the action sees: inside the container, or the host path when run natively.
    fn seen(&self, dir: &str, file: &str, container: bool) -> String {
        let base = if container {
            Self::MOUNTS.iter().find(|(d, _)| *d == dir).unwrap().1.to_string()
        } else {
            self.host(dir).display().to_string()
        };
        if file.is_empty() {
            base
        } else {
            format!("{base}/{file}")
        }
    }
}

/// How the action is started: the host binary, or the image (`TJ_IMAGE`).
struct Runner {
    image: Option<String>,
    container_run: Vec<String>,
}

impl Runner {
    fn from_env() -> Self {
        let image = std::env::var("TJ_IMAGE").ok().filter(|s| !s.is_empty());
        let container_run = std::env::var("TJ_CONTAINER_RUN")
            .unwrap_or_else(|_| "podman run --rm --network host".to_string())
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Runner { image, container_run }
    }

    /// Starts the action with exactly `env` (plus PATH), no arguments, from the workspace.
    fn run(&self, dirs: &RunnerDirs, env: &BTreeMap<String, String>) -> Run {
        const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        let mut cmd = match &self.image {
            None => {
                let mut c = Command::new(support::bin());
                c.current_dir(dirs.host("workspace"));
                c
            }
            Some(image) => {
                // As the runner does: `docker run --workdir /github/workspace --rm -e NAME ...
                // -v host:/github/... IMAGE` with the values in the docker client's environment.
                let mut c = Command::new(&self.container_run[0]);
                c.args(&self.container_run[1..])
                    .args(["--workdir", "/github/workspace"]);
                for (dir, mount) in RunnerDirs::MOUNTS {
                    c.arg("-v").arg(format!("{}:{mount}", dirs.host(dir).display()));
                }
                for name in env.keys() {
                    c.arg("-e").arg(name);
                }
                c.arg(image);
                c
            }
        };
        let out = cmd
            .env_clear()
            .envs(env)
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("start the action ({:?}): {e}", cmd.get_program()));
        Run::of(out)
    }
}

/// `$GITHUB_OUTPUT`: `name=value` lines or `name<<DELIM` … `DELIM` blocks.
fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            out.insert(name.to_string(), value.to_string());
        } else {
            panic!("GITHUB_OUTPUT: cannot parse {line:?}\n{text}");
        }
    }
    out
}

fn is_release_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15 && b[8] == b'_' && b.iter().enumerate().all(|(i, c)| i == 8 || c.is_ascii_digit())
}

/// Issue #6, must-show 5: the binary started exactly as GitHub starts the action deploys to a
/// real host, writes the declared outputs and the job summary, and never prints the key.
#[test]
fn action_started_like_github_deploys_and_writes_outputs() {
    let runner = Runner::from_env();
    let container = runner.image.is_some();
    let sb = Sandbox::new("action");
    let dirs = RunnerDirs::new(sb.root.join("runner"));
    let commit = sha(6);

    // The checked-out repository: the app and a tj-deploy.toml that ships it.
    support::sh_ok(&format!(
        "cp -r {} {}/app",
        sb.build_dir.display(),
        dirs.host("workspace").display()
    ));
    let config = std::fs::read_to_string(&sb.config)
        .unwrap()
        .replace(&format!("dir = \"{}\"", sb.build_dir.display()), "dir = \"app\"");
    assert!(config.contains("dir = \"app\""), "{config}");
    std::fs::write(dirs.host("workspace").join("tj-deploy.toml"), config).unwrap();
    let event = serde_json::json!({
        "ref": "refs/heads/develop",
        "after": commit,
        "repository": { "full_name": "org/trading-journal" },
        "pusher": { "name": "octo-dev" },
    });
    std::fs::write(dirs.host("workflow").join("event.json"), event.to_string()).unwrap();
    let output_name = "set_output_6c1d8e3a";
    let summary_name = "step_summary_6c1d8e3a";
    for f in [output_name, summary_name] {
        std::fs::write(dirs.host("file_commands").join(f), "").unwrap();
    }

    // Every input, as GitHub passes it: its default unless the workflow's `with:` sets it.
    let key = std::fs::read_to_string(&sb.sshd.key).unwrap();
    let with: BTreeMap<&str, String> = [
        ("environment", "staging".to_string()),
        ("ssh-key", key.clone()),
        ("known-hosts", std::fs::read_to_string(&sb.sshd.known_hosts).unwrap()),
    ]
    .into_iter()
    .collect();
    let a = action_yml();
    let mut env = BTreeMap::new();
    for (name, e) in &a.inputs {
        let value = match with.get(name.as_str()) {
            Some(v) => v.clone(),
            None => evaluated_default(name, e.props.get("default").map(String::as_str).unwrap_or("")),
        };
        env.insert(format!("INPUT_{}", name.to_uppercase()), value);
    }
    for name in with.keys() {
        assert!(a.inputs.contains_key(*name), "the test sets an undeclared input {name}");
    }
    let gh = |k: &str, v: &str| (k.to_string(), v.to_string());
    env.extend([
        gh("CI", "true"),
        gh("GITHUB_ACTIONS", "true"),
        gh("GITHUB_SHA", &commit),
        gh("GITHUB_REF", "refs/heads/develop"),
        gh("GITHUB_REF_NAME", "develop"),
        gh("GITHUB_EVENT_NAME", "push"),
        gh("GITHUB_EVENT_PATH", &dirs.seen("workflow", "event.json", container)),
        gh("GITHUB_REPOSITORY", "org/trading-journal"),
        gh("GITHUB_REPOSITORY_OWNER", "org"),
        gh("GITHUB_RUN_ID", "4242"),
        gh("GITHUB_RUN_NUMBER", "7"),
        gh("GITHUB_RUN_ATTEMPT", "1"),
        gh("GITHUB_ACTOR", "octo-dev"),
        gh("GITHUB_WORKFLOW", "Deploy staging"),
        gh("GITHUB_JOB", "deploy"),
        gh("GITHUB_SERVER_URL", "https://github.com"),
        // A runner sets https://api.github.com; with no token nothing calls it, and a closed
        // local port guarantees this test never leaves the machine.
        gh("GITHUB_API_URL", "http://127.0.0.1:9"),
        gh("GITHUB_WORKSPACE", &dirs.seen("workspace", "", container)),
        gh("GITHUB_OUTPUT", &dirs.seen("file_commands", output_name, container)),
        gh(
            "GITHUB_STEP_SUMMARY",
            &dirs.seen("file_commands", summary_name, container),
        ),
        gh("HOME", &dirs.seen("home", "", container)),
        gh("RUNNER_OS", "Linux"),
        gh("RUNNER_TEMP", &dirs.seen("home", "", container)),
    ]);

    let run = runner.run(&dirs, &env);
    let mode = if container { "in the container" } else { "natively" };
    assert_eq!(
        run.code, 0,
        "the action ({mode}) failed\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );

    // The host now serves the commit GitHub said it deployed.
    assert_eq!(sb.revision().as_deref(), Some(commit.as_str()), "{}", run.all());
    let releases = sb.releases();
    assert_eq!(releases.len(), 1, "{releases:?}");

    let outputs_text = std::fs::read_to_string(dirs.host("file_commands").join(output_name)).unwrap();
    let outputs = parse_outputs(&outputs_text);
    assert_same_names(
        "outputs written by the run",
        &a.outputs.keys().cloned().collect(),
        &outputs.keys().cloned().collect(),
    );
    assert_eq!(outputs["status"], "success", "{outputs_text}");
    assert_eq!(outputs["commit"], commit);
    assert_eq!(outputs["release"], releases[0]);
    assert!(is_release_id(&outputs["release"]), "{outputs_text}");
    assert_eq!(
        outputs["backup"], outputs["release"],
        "a deploy's backup id is its release id"
    );
    assert_eq!(sb.backups(), vec![outputs["backup"].clone()]);
    assert!(outputs["duration-seconds"].parse::<u64>().is_ok(), "{outputs_text}");

    let summary = std::fs::read_to_string(dirs.host("file_commands").join(summary_name)).unwrap();
    assert!(summary.starts_with("## "), "job summary:\n{summary}");
    for expected in [
        "success",
        &outputs["release"],
        &commit[..7],
        "octo-dev",
        "https://github.com/org/trading-journal/actions/runs/4242",
    ] {
        assert!(summary.contains(expected), "job summary lacks {expected:?}:\n{summary}");
    }

    // Every line of the key is masked (`::add-mask::`) and appears nowhere else in the log.
    let body: Vec<&str> = key
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    assert!(!body.is_empty());
    let log = run.all();
    for secret in &body {
        assert!(
            log.lines().any(|l| l == format!("::add-mask::{secret}")),
            "a line of the SSH key is not masked"
        );
    }
    for line in log.lines().filter(|l| !l.starts_with("::add-mask::")) {
        for secret in &body {
            assert!(!line.contains(secret), "the SSH key leaked into the log: {line}");
        }
    }
}
