//! Issue #14, "What an independent review found": each item a test named after it that fails
//! on the code before the fix. Item 11 lives with the end-to-end tests (it needs PM2 workers).
//! Tests on the local transport need no sshd; the rest use the sandbox (sshd, PostgreSQL, PM2)
//! or the Prism-checked GitHub fake.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::github::github;
use support::{Run, Sandbox, sha};

/// A health endpoint that always answers healthy with `revision`.
fn healthy(revision: &str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let body = json!({"status": "healthy", "revision": revision}).to_string();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// An environment on the local transport (no SSH, no database, no PM2): a two-file app, a
/// health endpoint answering for `revision`, and `extra` lines in the staging table.
struct Local {
    root: tempfile::TempDir,
    config: PathBuf,
}

impl Local {
    fn new(revision: &str, extra: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let build = root.path().join("build");
        std::fs::create_dir_all(&build).unwrap();
        std::fs::write(build.join("index.js"), "console.log('hi')\n").unwrap();
        std::fs::write(build.join("package.json"), "{\"name\":\"app\",\"version\":\"1.0.0\"}\n").unwrap();
        let local = Local {
            config: root.path().join("tj-deploy.toml"),
            root,
        };
        local.write_config(revision, extra);
        local
    }

    /// Keys in `extra` replace the same keys of the base table (e.g. `reload`, `health_timeout`).
    fn write_config(&self, revision: &str, extra: &str) {
        let port = healthy(revision);
        let r = self.root.path().display();
        let base = format!(
            r#"app = "trading-journal"
[package]
dir = "{r}/build"
[environments.staging]
transport = "local"
hosts = ["deploy@localhost"]
deploy_dir = "{r}/srv/app"
backup_dir = "{r}/backups/app"
health_url = "http://127.0.0.1:{port}/api/health"
health_timeout = "5s"
health_interval = "100ms"
migrate = ""
reload = ""
database_backup = false
linked_files = []
"#
        );
        let overridden = |line: &str| {
            line.split_once(" = ")
                .is_some_and(|(key, _)| extra.lines().any(|l| l.starts_with(&format!("{key} = "))))
        };
        let kept: String = base
            .lines()
            .filter(|l| !overridden(l))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&self.config, format!("{kept}{extra}\n")).unwrap();
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn deploy_dir(&self) -> PathBuf {
        self.path("srv/app")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(support::bin());
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_SHA")
            .env_remove("GITHUB_TOKEN")
            .stdin(Stdio::null());
        c
    }

    fn deploy(&self, commit: &str) -> Run {
        Run::of(
            self.cmd(&["deploy", "-e", "staging", "--sha", commit])
                .output()
                .unwrap(),
        )
    }

    fn current(&self) -> Option<String> {
        support::current_in(&self.deploy_dir())
    }

    fn releases(&self) -> Vec<String> {
        support::releases_in(&self.deploy_dir())
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(self.cmd(args).output().unwrap())
    }

    /// The id of the release `current` points at.
    fn current_id(&self) -> String {
        let c = self.current().expect("current");
        c.strip_prefix("releases/").unwrap_or(&c).to_string()
    }

    fn backups(&self) -> Vec<String> {
        support::backups_in(&self.path("backups/app"))
    }

    /// The backup's manifest.json.
    fn manifest(&self, backup: &str) -> serde_json::Value {
        let p = self.path("backups/app").join(backup).join("manifest.json");
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    /// In the ledger `.tj-deploy/bad/`, or BAD_RELEASE in its directory.
    fn marked_bad(&self, release: &str) -> (bool, bool) {
        (
            self.deploy_dir().join(".tj-deploy/bad").join(release).is_file(),
            self.deploy_dir()
                .join("releases")
                .join(release)
                .join("BAD_RELEASE")
                .is_file(),
        )
    }

    fn last_log(&self) -> serde_json::Value {
        let log = std::fs::read_to_string(self.deploy_dir().join(".tj-deploy/deployments.log")).unwrap();
        serde_json::from_str(log.lines().last().unwrap()).unwrap()
    }

    /// Runs with `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY` pointed at fresh files:
    /// (run, outputs, job summary).
    fn run_in_actions_files(&self, args: &[&str]) -> (Run, BTreeMap<String, String>, String) {
        let dir = tempfile::tempdir().unwrap();
        let (out, summary) = (dir.path().join("output"), dir.path().join("summary"));
        let run = Run::of(
            self.cmd(args)
                .env("GITHUB_OUTPUT", &out)
                .env("GITHUB_STEP_SUMMARY", &summary)
                .output()
                .unwrap(),
        );
        let outputs = parse_outputs(&std::fs::read_to_string(&out).unwrap_or_default());
        (run, outputs, std::fs::read_to_string(&summary).unwrap_or_default())
    }
}

/// `name<<DELIM` … `DELIM` blocks of a `$GITHUB_OUTPUT` file.
fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delim).collect();
            map.insert(name.to_string(), value.join("\n"));
        }
    }
    map
}

/// Health checks that give up after 2 s (a failing verify must not cost 5 s per run), and an
/// install with nothing to do.
const FAST: &str = "health_timeout = \"2s\"\ninstall = \"true\"";

fn pgrep(pattern: &str) -> String {
    String::from_utf8_lossy(&support::sh(&format!("pgrep -af {}", shell_quote(pattern))).stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Item 4: `install = "false; echo should-not-run"` fails at `false`.
#[test]
fn hooks_stop_at_their_first_failure() {
    let commit = sha(4);
    let local = Local::new(&commit, "");
    let marker = local.path("should-not-run");
    local.write_config(
        &commit,
        &format!("install = \"false; echo should-not-run > {}\"", marker.display()),
    );
    let run = local.deploy(&commit);
    run.expect(1);
    assert!(!marker.exists(), "the hook went on after its first failure");
    assert!(run.error_line().contains("install"), "{}", run.error_line());
    assert_eq!(local.current(), None);
    assert_eq!(
        local.releases(),
        Vec::<String>::new(),
        "the unfinished release was removed"
    );
}

const SECRET_NAMES: [&str; 6] = [
    "INPUT_SSH-KEY",
    "INPUT_GITHUB-TOKEN",
    "GITHUB_TOKEN",
    "TJ_SSH_KEY",
    "INPUT_SLACK-WEBHOOK",
    "SLACK_WEBHOOK_URL",
];

/// Item 10: hooks of the local transport, `git` and `ssh` never see the secret variables.
#[test]
fn secrets_stay_with_tj_deploy() {
    let local = Local::new(&sha(10), "");
    let dumps = local.path("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    // `git` and `ssh` on the PATH record their environment, then do their work.
    let bin = local.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["git", "ssh"] {
        let real = support::sh_ok(&format!("command -v {tool}")).trim().to_string();
        let wrapper = bin.join(tool);
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\nenv > {}/{tool}.env\nexec {real} \"$@\"\n", dumps.display()),
        )
        .unwrap();
        support::sh_ok(&format!("chmod +x {}", wrapper.display()));
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let head = support::sh_ok(&format!(
        "cd {} && git init -q && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m x && git rev-parse HEAD",
        local.path("build").display()
    ))
    .trim()
    .to_string();
    local.write_config(&head, &format!("install = \"env > {}/hook.env\"", dumps.display()));
    let key_dir = local.path("key");
    std::fs::create_dir_all(&key_dir).unwrap();
    support::sh_ok(&format!("ssh-keygen -q -t ed25519 -N '' -f {}/k", key_dir.display()));
    let key = std::fs::read_to_string(key_dir.join("k")).unwrap();
    // A token turns GitHub on: the fake answers (no gate applies to this environment).
    let g = github();
    g.setup("o/secrets", json!({}));
    let with_secrets = |c: &mut Command| {
        c.env("PATH", &path)
            .env("HOME", local.path("."))
            .env("GITHUB_REPOSITORY", "o/secrets")
            .env("GITHUB_API_URL", g.api_url())
            .env("TJ_GITHUB_BACKOFF_MS", "50");
        for name in SECRET_NAMES {
            c.env(name, format!("secret-value-of-{name}"));
        }
        c.env("TJ_SSH_KEY", &key)
            .env("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/secret-value-of-slack");
    };
    // No --sha: the commit comes from `git rev-parse HEAD` in package.dir.
    let mut c = local.cmd(&["deploy", "-e", "staging"]);
    with_secrets(&mut c);
    let run = Run::of(c.output().unwrap());
    run.expect(0);
    // ssh: an environment whose host is a closed port; `unlock` starts the ssh master.
    let closed = support::free_port();
    let ssh_config = local.path("ssh.toml");
    std::fs::write(
        &ssh_config,
        format!(
            "app = \"t\"\n[environments.staging]\nhosts = [\"deploy@127.0.0.1:{closed}\"]\ndeploy_dir = \"/srv/x\"\nbackup_dir = \"/srv/x-b\"\nhealth_url = \"http://127.0.0.1:{closed}/\"\nconnect_timeout = \"2s\"\n"
        ),
    )
    .unwrap();
    let mut c = Command::new(support::bin());
    c.args(["unlock", "-e", "staging", "--known-hosts-file", "/dev/null", "--config"])
        .arg(&ssh_config)
        .env_remove("GITHUB_ACTIONS");
    with_secrets(&mut c);
    let unlock = Run::of(c.output().unwrap());
    for (who, file) in [("the install hook", "hook.env"), ("git", "git.env"), ("ssh", "ssh.env")] {
        let env = std::fs::read_to_string(dumps.join(file))
            .unwrap_or_else(|e| panic!("{who} never ran ({e}): {}\n{}", run.all(), unlock.all()));
        for name in SECRET_NAMES {
            assert!(
                !env.lines().any(|l| l.starts_with(&format!("{name}="))),
                "{who} saw {name}:\n{env}"
            );
        }
        assert!(
            !env.contains("secret-value-of-") && !env.contains("PRIVATE KEY"),
            "{who}:\n{env}"
        );
    }
}

/// Parses an Actions log like the runner does: lines split at LF and CR, trimmed; a line
/// `::name props::data` is a command, except inside a `::stop-commands::<token>` fence.
/// Returns the commands (name, data) and whether a fence was left open at the end.
fn runner_commands(log: &str) -> (Vec<(String, String)>, bool) {
    let mut stopped: Option<String> = None;
    let mut cmds = Vec::new();
    for line in log.split(['\n', '\r']).map(str::trim) {
        if let Some(token) = &stopped {
            if line == format!("::{token}::") {
                stopped = None;
            }
            continue;
        }
        let Some((head, data)) = line.strip_prefix("::").and_then(|r| r.split_once("::")) else {
            continue;
        };
        let name = head.split(' ').next().unwrap_or("").to_string();
        if name == "stop-commands" {
            stopped = Some(data.to_string());
        }
        cmds.push((name, data.to_string()));
    }
    (cmds, stopped.is_some())
}

/// Item 2: in Actions mode a hook printing workflow commands (stdout and stderr, with a CR
/// trick too) shows text; our own ::group::, ::add-mask:: and ::error:: still work.
#[test]
fn remote_output_cannot_drive_the_runner() {
    let commit = sha(2);
    let local = Local::new(&commit, "");
    let hostile = "echo '::add-mask::HOSTMASK'; echo '::error::HOSTERROR'; echo '::stop-commands::HOSTSTOP'; \
                   printf 'x\\r::warning::HOSTCR\\n'; echo '::add-mask::HOSTERR' >&2";
    let actions = |extra: &str| {
        local.write_config(&commit, &format!("install = \"{hostile}{extra}\""));
        let mut c = local.cmd(&["deploy", "-e", "staging", "--sha", &commit]);
        c.env("GITHUB_ACTIONS", "true")
            .env("INPUT_SSH-KEY", "OUR-OWN-MASKED-KEY");
        Run::of(c.output().unwrap())
    };
    for (extra, code) in [("", 0), ("; echo '::add-mask::HOSTTAIL' >&2; exit 3", 1)] {
        let run = actions(extra);
        run.expect(code);
        let (cmds, open) = runner_commands(&run.stdout);
        assert!(!open, "a fence was left open:\n{}", run.stdout);
        for (name, data) in &cmds {
            let from_host = match name.as_str() {
                "add-mask" | "warning" => data.contains("HOST"),
                "error" => data.starts_with("HOST"),
                "stop-commands" => !(data.starts_with("tj-") && data.len() > 30),
                _ => false,
            };
            assert!(
                !from_host,
                "the host drove the runner: ::{name}::{data}\n{}",
                run.stdout
            );
        }
        for line in [
            "::add-mask::HOSTMASK",
            "::error::HOSTERROR",
            "::stop-commands::HOSTSTOP",
            "::add-mask::HOSTERR",
        ] {
            // Shown as text, after the host's name (hosts' lines say whose they are).
            assert!(
                run.stdout
                    .lines()
                    .any(|l| l.trim() == line || l.ends_with(&format!(" │ {line}"))),
                "the host's line {line} is shown as text:\n{}",
                run.stdout
            );
        }
        let has = |n: &str, d: &str| cmds.iter().any(|(name, data)| name == n && data.contains(d));
        assert!(
            has("add-mask", "OUR-OWN-MASKED-KEY"),
            "our own mask works:\n{}",
            run.stdout
        );
        assert!(has("group", "install"), "our own groups work:\n{}", run.stdout);
        assert!(has("endgroup", ""), "{}", run.stdout);
        if code == 1 {
            assert!(has("error", "install"), "our own ::error:: works:\n{}", run.stdout);
        }
    }
}

/// Item 13: a `current` that is a real directory (a server set up by hand) is found during
/// inspect, before any backup, release or log; the message says how to adopt it.
#[test]
fn current_that_is_a_directory_is_found_during_inspect() {
    let commit = sha(13);
    let local = Local::new(&commit, "install = \"true\"");
    let current = local.deploy_dir().join("current");
    std::fs::create_dir_all(&current).unwrap();
    std::fs::write(current.join("server.js"), "by hand\n").unwrap();
    let run = local.deploy(&commit);
    run.expect(2);
    let e = run.error_line();
    assert!(e.contains("current is a directory"), "{e}");
    assert!(
        e.contains("mv ") && e.contains("releases/") && e.contains("ln -s"),
        "{e}"
    );
    assert!(current.is_dir() && !current.is_symlink());
    assert_eq!(std::fs::read_to_string(current.join("server.js")).unwrap(), "by hand\n");
    assert_eq!(local.releases(), Vec::<String>::new());
    assert_eq!(support::backups_in(&local.path("backups/app")), Vec::<String>::new());
    assert!(!local.deploy_dir().join(".tj-deploy/lock").exists());
    assert!(!local.deploy_dir().join(".tj-deploy/deployments.log").exists());
}

/// Item 3 on the local transport: a hook over its limit is stopped with its process group.
#[test]
fn every_remote_step_has_a_time_limit_on_the_local_transport() {
    let commit = sha(3);
    let local = Local::new(&commit, "install = \"sleep 38\"\ntimeouts = { install = \"1s\" }");
    let t0 = Instant::now();
    let run = local.deploy(&commit);
    run.expect(1);
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    assert!(
        run.error_line()
            .contains("install on deploy@localhost exceeded its time limit of 1s"),
        "{}",
        run.error_line()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pgrep("sleep 38"), "", "the hook's process outlived its step");
    assert_eq!(local.releases(), Vec::<String>::new());
    assert!(!local.deploy_dir().join(".tj-deploy/lock").exists());
    // An unknown step name is an error naming the key.
    local.write_config(&commit, "timeouts = { instal = \"1s\" }");
    let run = local.deploy(&commit);
    run.expect(2);
    assert!(run.error_line().contains("timeouts.instal"), "{}", run.error_line());
}

/// Item 3 over SSH: `sleep 30` as install with a 2 s limit fails within seconds, the failure
/// path runs (release removed, current unchanged, lock released) and no sleep is left.
#[test]
fn every_remote_step_has_a_time_limit() {
    let sb = Sandbox::new("timeouts");
    sb.deploy(&sha(1)).expect(0);
    let (current, releases) = (sb.current(), sb.releases());
    sb.write_config("install = \"sleep 31\"\ntimeouts = { install = \"2s\" }");
    sb.set_app("2.0.0", false);
    let t0 = Instant::now();
    let run = sb.deploy(&sha(2));
    run.expect(1);
    assert!(t0.elapsed() < Duration::from_secs(20), "took {:?}", t0.elapsed());
    assert!(
        run.error_line()
            .contains(&format!("install on {} exceeded its time limit of 2s", sb.sshd.host())),
        "{}",
        run.error_line()
    );
    assert_eq!(sb.current(), current);
    assert_eq!(sb.releases(), releases, "the unfinished release was removed");
    assert!(!sb.lock_exists());
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));
    let deadline = Instant::now() + Duration::from_secs(3);
    while !pgrep("sleep 31").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(pgrep("sleep 31"), "", "the remote hook outlived its step");
}

/// Item 1: `rollback` under `dry-run: true` (the action input) and `--dry-run` prints its plan
/// and changes nothing; so does `unlock --dry-run`; `backups` has no dry run (exit 2).
#[test]
fn dry_run_changes_nothing_for_rollback() {
    let sb = Sandbox::new("dryrb");
    sb.deploy(&sha(1)).expect(0);
    let first = sb.releases()[0].clone();
    sb.set_app("2.0.0", false);
    sb.deploy(&sha(2)).expect(0);
    let before = sb.snapshot();

    let mut c = sb.cmd(&["rollback", "-e", "staging"]);
    c.env("GITHUB_ACTIONS", "true").env("INPUT_DRY-RUN", "true");
    let run = Run::of(c.output().unwrap());
    run.expect(0);
    assert!(run.stdout.contains("Dry run"), "{}", run.all());
    assert!(
        run.stdout.contains(&format!("release {first}")),
        "the plan names the target: {}",
        run.all()
    );
    assert_eq!(sb.snapshot(), before, "a dry-run rollback changed the host");
    assert_eq!(sb.revision().as_deref(), Some(sha(2).as_str()));

    let run = Run::of(sb.cmd(&["rollback", "-e", "staging", "--dry-run"]).output().unwrap());
    run.expect(0);
    for step in ["lock", "backup", "switch", "reload", "verify", "unlock"] {
        assert!(run.stdout.contains(step), "plan lacks {step}: {}", run.stdout);
    }
    assert_eq!(sb.snapshot(), before);

    // unlock --dry-run names the holder and leaves the lock.
    let lock = sb.deploy_dir.join(".tj-deploy/lock");
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(
        lock.join("owner.json"),
        json!({"actor": "ana", "command": "deploy", "environment": "staging", "sha": null, "run_url": null,
               "started_at": "2026-01-01T00:00:00Z", "token": "t"})
        .to_string(),
    )
    .unwrap();
    let locked = sb.snapshot();
    let run = Run::of(sb.cmd(&["unlock", "-e", "staging", "--dry-run"]).output().unwrap());
    run.expect(0);
    assert!(
        run.stdout.contains("would remove the deploy lock held by ana"),
        "{}",
        run.all()
    );
    assert_eq!(sb.snapshot(), locked);
    let mut c = sb.cmd(&["unlock", "-e", "staging"]);
    c.env("GITHUB_ACTIONS", "true").env("INPUT_DRY-RUN", "true");
    Run::of(c.output().unwrap()).expect(0);
    assert_eq!(sb.snapshot(), locked, "unlock with the input dry-run removed the lock");

    // No plan, no dry run: refused naming the flag, before any connection.
    let run = Run::of(sb.cmd(&["backups", "-e", "staging", "--dry-run"]).output().unwrap());
    run.expect(2);
    assert!(run.stderr.contains("--dry-run"), "{}", run.all());
    let mut c = sb.cmd(&["backups", "-e", "staging"]);
    c.env("GITHUB_ACTIONS", "true").env("INPUT_DRY-RUN", "true");
    let run = Run::of(c.output().unwrap());
    run.expect(2);
    assert!(run.all().contains("dry-run"), "{}", run.all());
    assert_eq!(sb.snapshot(), locked);
}

/// Item 9: `unlock` names the holder and the lock's age, goes on past an unreachable host
/// (exit 1 at the end, naming it), and logs what it removed.
#[test]
fn unlock_names_the_holder_continues_past_unreachable_hosts_and_logs() {
    let sb = Sandbox::new("unlock");
    sb.deploy(&sha(1)).expect(0);
    let closed = support::free_port();
    let unreachable = format!("deploy@127.0.0.1:{closed}");
    let text = support::config_text(
        &sb.build_dir,
        &[unreachable.clone(), sb.sshd.host()],
        &sb.deploy_dir,
        &sb.backup_dir,
        // Two hosts: health_url names each host ({host}); unlock never requests it.
        &format!("http://{{host}}:{}/api/health", sb.app_port),
        "connect_timeout = \"2s\"",
    );
    std::fs::write(&sb.config, text).unwrap();
    let lock = sb.deploy_dir.join(".tj-deploy/lock");
    std::fs::create_dir_all(&lock).unwrap();
    let started =
        (chrono::Utc::now() - chrono::Duration::seconds(330)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(
        lock.join("owner.json"),
        json!({"actor": "ana", "command": "deploy", "environment": "staging", "sha": sha(7), "run_url": null,
               "started_at": started, "token": "t"})
        .to_string(),
    )
    .unwrap();
    support::sh_ok(&format!("chown -R {}: {}", support::DEPLOY_USER, lock.display()));
    let run = Run::of(sb.cmd(&["unlock", "-e", "staging"]).output().unwrap());
    run.expect(1);
    let all = run.all();
    assert!(all.contains("held by ana (deploy since"), "{all}");
    assert!(all.contains("5m3"), "the lock's age (5m30s): {all}");
    assert!(run.error_line().contains(&unreachable), "{}", run.error_line());
    assert!(
        !sb.lock_exists(),
        "the reachable host after the unreachable one was unlocked"
    );
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "unlock", "{last}");
    assert_eq!(last["lock"]["actor"], "ana", "{last}");
}

const TOKEN: &str = "ghs_testtoken0123456789";

fn with_github(c: &mut Command, repo: &str, git_ref: &str) {
    c.env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_REPOSITORY", repo)
        .env("GITHUB_API_URL", github().api_url())
        .env("GITHUB_REF", git_ref)
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("TJ_GITHUB_BACKOFF_MS", "50");
}

/// A config whose hosts are a closed port: past the gates a run fails to connect (exit 1).
fn gate_config(dir: &Path, staging_extra: &str) -> PathBuf {
    let closed = support::free_port();
    let path = dir.join("tj-deploy.toml");
    std::fs::write(
        &path,
        format!(
            r#"app = "trading-journal"
[package]
dir = "{app}"
[defaults]
hosts = ["deploy@127.0.0.1:{closed}"]
health_url = "http://127.0.0.1:{closed}/api/health"
connect_timeout = "2s"
[environments.staging]
deploy_dir = "/srv/gate-test"
backup_dir = "/srv/gate-test-backups"
branch = "develop"
{staging_extra}
[environments.production]
deploy_dir = "/srv/gate-test"
backup_dir = "/srv/gate-test-backups"
branch = "main"
require_staging = true
"#,
            app = support::repo().join("examples/trading-journal").display()
        ),
    )
    .unwrap();
    path
}

fn gated_cmd(config: &Path, repo: &str, env: &str, git_ref: &str, commit: &str) -> Command {
    let mut c = Command::new(support::bin());
    c.args([
        "deploy",
        "-e",
        env,
        "--sha",
        commit,
        "--known-hosts-file",
        "/dev/null",
        "--config",
    ])
    .arg(config)
    .env_remove("GITHUB_ACTIONS")
    .env("HOME", config.parent().unwrap());
    with_github(&mut c, repo, git_ref);
    c
}

/// Item 8: deploy A to staging, then B (A's status turns `inactive`, as GitHub's
/// auto_inactive does): production of A still passes the staging gate.
#[test]
fn the_staging_gate_survives_staging_moving_on() {
    let g = github();
    let sb = Sandbox::new("stagegate");
    let (a, b) = (sha(0xa), sha(0xb));
    g.setup("o/moving", json!({"branches": {"develop": [a], "main": [a]}}));
    let mut c = sb.cmd(&["deploy", "-e", "staging", "--sha", &a]);
    with_github(&mut c, "o/moving", "refs/heads/develop");
    Run::of(c.output().unwrap()).expect(0);
    g.set_branches("o/moving", json!({"develop": [a, b]}));
    sb.set_app("2.0.0", false);
    let mut c = sb.cmd(&["deploy", "-e", "staging", "--sha", &b]);
    with_github(&mut c, "o/moving", "refs/heads/develop");
    Run::of(c.output().unwrap()).expect(0);
    let state = g.state("o/moving");
    let of_a = state["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["sha"] == a.as_str())
        .unwrap()
        .clone();
    let states: Vec<&str> = of_a["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.last(),
        Some(&"inactive"),
        "the fake models auto_inactive: {states:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = gate_config(dir.path(), "");
    let run = Run::of(
        gated_cmd(&config, "o/moving", "production", "refs/heads/main", &a)
            .output()
            .unwrap(),
    );
    assert!(run.all().contains("✓ gate staging first"), "{}", run.all());
    run.expect(1); // past the gates, the closed port
    assert_eq!(g.violations("o/moving"), Vec::<String>::new());
}

/// Item 13: a commit with 150 check runs: the required ones on the second page are found.
#[test]
fn check_runs_are_paginated() {
    let g = github();
    let commit = sha(0x13);
    let mut runs: Vec<serde_json::Value> = (0..148)
        .map(|i| json!({"name": format!("matrix-{i}"), "head_sha": commit}))
        .collect();
    runs.push(json!({"name": "lint", "head_sha": commit}));
    runs.push(json!({"name": "unit", "head_sha": commit}));
    g.setup("o/many", json!({"branches": {"develop": [commit]}, "check_runs": runs}));
    let dir = tempfile::tempdir().unwrap();
    let config = gate_config(
        dir.path(),
        "required_checks = [\"lint\", \"unit\"]\nchecks_timeout = \"2s\"\nchecks_interval = \"200ms\"",
    );
    let run = Run::of(
        gated_cmd(&config, "o/many", "staging", "refs/heads/develop", &commit)
            .output()
            .unwrap(),
    );
    assert!(run.all().contains("✓ gate required checks"), "{}", run.all());
    run.expect(1);
    assert_eq!(g.violations("o/many"), Vec::<String>::new());
}

/// Item 13: Ctrl-C while the gates wait for a pending check ends the run within about two
/// seconds (exit 1), touching nothing.
#[test]
fn ctrl_c_while_gates_wait_stops_promptly() {
    let g = github();
    let commit = sha(0xc);
    g.setup(
        "o/pending",
        json!({"branches": {"develop": [commit]}, "check_runs": [{"name": "lint", "head_sha": commit, "status": "in_progress", "conclusion": null}]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = gate_config(
        dir.path(),
        "required_checks = [\"lint\"]\nchecks_timeout = \"120s\"\nchecks_interval = \"500ms\"",
    );
    let mut child = gated_cmd(&config, "o/pending", "staging", "refs/heads/develop", &commit)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("waiting up to") {
            break;
        }
    }
    assert!(seen.contains("waiting up to"), "{seen}");
    std::thread::sleep(Duration::from_secs(1));
    support::sh_ok(&format!("kill -INT {}", child.id()));
    let t0 = Instant::now();
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let status = child.wait().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?} after SIGINT",
        t0.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{seen}{}", rest.join("\n"));
    let all = format!("{seen}{}", rest.join("\n"));
    assert!(all.contains("cancelled"), "{all}");
    assert!(!all.contains("connect ["), "nothing was touched: {all}");
}

/// Deploys A, then B (health answering B): the rollback `latest` would go back to A.
fn a_then_b(local: &Local, a: &str, b: &str, extra: &str) -> (String, String) {
    local.write_config(a, extra);
    local.deploy(a).expect(0);
    let ra = local.current_id();
    local.write_config(b, extra);
    local.deploy(b).expect(0);
    (ra, local.current_id())
}

/// Item 5: a rollback whose verify fails (health still answers B while it goes back to A)
/// puts B back, exits 1 and says so; B is not marked bad, the safety backup holds B, the lock
/// is released and the log says failure.
#[test]
fn rollback_has_a_failure_path() {
    let (a, b) = (sha(0x5a), sha(0x5b));
    let local = Local::new(&a, FAST);
    let (_, rb) = a_then_b(&local, &a, &b, FAST);
    let before = local.backups();
    let run = local.run(&["rollback", "-e", "staging"]);
    run.expect(1);
    let e = run.error_line();
    assert!(e.contains("rollback failed"), "{e}");
    assert!(e.contains("Put back what was live before the rollback"), "{e}");
    assert!(e.contains(&rb), "names the release put back: {e}");
    assert_eq!(local.current_id(), rb);
    assert_eq!(local.marked_bad(&rb), (false, false), "the live release was marked bad");
    let after = local.backups();
    let safety: Vec<&String> = after.iter().filter(|b| !before.contains(b)).collect();
    assert_eq!(safety.len(), 1, "one safety backup: {before:?} → {after:?}");
    assert_eq!(local.manifest(safety[0])["release"], rb.as_str());
    assert!(!local.deploy_dir().join(".tj-deploy/lock").exists());
    assert_eq!(local.last_log()["status"], "failure", "{}", local.last_log());
}

/// Item 5, SIGTERM while the rollback's reload runs: B is put back (its reload is quick), exit
/// 1 within seconds, no hook process left, B not marked bad.
#[test]
fn rollback_has_a_failure_path_on_sigterm() {
    let (a, b) = (sha(0x5c), sha(0x5d));
    let local = Local::new(&a, FAST);
    let (_, rb) = a_then_b(&local, &a, &b, FAST);
    let reload = format!("reload = 'if [ \"$TJ_REVISION\" = \"{a}\" ]; then sleep 29; fi'");
    local.write_config(&b, &format!("{FAST}\n{reload}"));
    let mut child = local
        .cmd(&["rollback", "-e", "staging"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("▶ reload [") {
            break;
        }
    }
    assert!(seen.contains("▶ reload ["), "{seen}");
    std::thread::sleep(Duration::from_millis(300));
    support::sh_ok(&format!("kill -TERM {}", child.id()));
    let t0 = Instant::now();
    let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
    let status = child.wait().unwrap();
    let all = format!("{seen}{}", rest.join("\n"));
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}: {all}", t0.elapsed());
    assert_eq!(status.code(), Some(1), "{all}");
    assert_eq!(local.current_id(), rb, "{all}");
    assert_eq!(local.marked_bad(&rb), (false, false));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(pgrep("sleep 29"), "", "the reload hook outlived the rollback");
    assert!(!local.deploy_dir().join(".tj-deploy/lock").exists());
}

/// Item 6: B rolled back is in the ledger; with its directory pruned by hand, `latest`
/// still never picks it (exit 3, nothing touched) and `backups` shows it bad.
#[test]
fn bad_releases_stay_bad_after_pruning() {
    let (a, b) = (sha(0x6a), sha(0x6b));
    let local = Local::new(&a, FAST);
    let (ra, rb) = a_then_b(&local, &a, &b, FAST);
    let before = local.backups();
    local.write_config(&a, FAST);
    local.run(&["rollback", "-e", "staging"]).expect(0);
    assert_eq!(local.current_id(), ra);
    assert!(local.marked_bad(&rb).0, "B is in the ledger");
    let safety: Vec<String> = local.backups().into_iter().filter(|b| !before.contains(b)).collect();
    assert_eq!(safety.len(), 1, "{safety:?}");
    let s = safety[0].clone();
    assert_eq!(local.manifest(&s)["release"], rb.as_str());

    std::fs::remove_dir_all(local.deploy_dir().join("releases").join(&rb)).unwrap();
    let (releases, backups) = (local.releases(), local.backups());
    let run = local.run(&["rollback", "-e", "staging"]);
    run.expect(3);
    assert!(
        run.error_line().contains("no backup holds a release"),
        "{}",
        run.error_line()
    );
    assert_eq!(local.releases(), releases);
    assert_eq!(local.backups(), backups);
    assert_eq!(local.current_id(), ra);

    let run = local.run(&["backups", "-e", "staging", "--json"]);
    run.expect(0);
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == s.as_str())
        .unwrap_or_else(|| panic!("{s} not listed: {list}"))
        .clone();
    assert_eq!(entry["release_bad"], true, "{entry}");
    let run = local.run(&["backups", "-e", "staging"]);
    run.expect(0);
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&s))
        .unwrap_or_else(|| panic!("{s} not listed: {}", run.stdout));
    assert!(row.contains("BAD_RELEASE"), "{row}");
}

/// Item 7: failed deploys prune too (keep_releases = 2, keep_backups = 2), bad releases
/// never displace good ones, every failure stays in the ledger.
#[test]
fn retention_as_design_says() {
    let extra = format!("{FAST}\nkeep_releases = 2\nkeep_backups = 2");
    let a = sha(0x7a);
    let local = Local::new(&a, &extra);
    local.deploy(&a).expect(0);
    let ra = local.current_id();
    let mut bad = Vec::new();
    for n in [0x7b, 0x7c, 0x7d] {
        let run = local.deploy(&sha(n));
        run.expect(1);
        let releases = local.releases();
        assert_eq!(releases.len(), 2, "{releases:?}\n{}", run.all());
        assert_eq!(releases[0], ra);
        bad.push(releases[1].clone());
        assert!(local.backups().len() <= 2, "{:?}", local.backups());
        assert_eq!(local.current_id(), ra);
    }
    for r in &bad {
        assert!(local.marked_bad(r).0, "{r} not in the ledger");
    }
    let (e, f, g, h) = (sha(0x7e), sha(0x7f), sha(0x71), sha(0x72));
    local.write_config(&e, &extra);
    local.deploy(&e).expect(0);
    local.write_config(&f, &extra);
    local.deploy(&f).expect(0);
    let rf = local.current_id();
    local.deploy(&g).expect(1);
    local.write_config(&h, &extra);
    local.deploy(&h).expect(0);
    let releases = local.releases();
    assert!(releases.contains(&rf), "bad G took good F's place: {releases:?}");
    assert!(local.backups().len() <= 2, "{:?}", local.backups());
    // A rollback prunes too: its safety backup does not make three.
    local.write_config(&f, &extra);
    local.run(&["rollback", "-e", "staging"]).expect(0);
    assert_eq!(local.current_id(), rf);
    assert!(local.backups().len() <= 2, "{:?}", local.backups());
}

/// Item 12: outputs and summary name the live release and the failed one as such.
#[test]
fn outputs_tell_the_truth() {
    let (a, b, c, d) = (sha(0x12a), sha(0x12b), sha(0x12c), sha(0x12d));
    let local = Local::new(&a, FAST);
    local.deploy(&a).expect(0);
    let ra = local.current_id();

    // B fails verify and is rolled back.
    let (run, out, summary) = local.run_in_actions_files(&["deploy", "-e", "staging", "--sha", &b]);
    run.expect(1);
    let rb = local.releases().into_iter().find(|r| *r != ra).expect("B's release");
    assert_eq!(out.get("status").map(String::as_str), Some("rolled-back"), "{out:?}");
    assert_eq!(out.get("release"), Some(&ra), "{out:?}");
    assert!(summary.contains(&format!("| **Release** | `{ra}` |")), "{summary}");
    assert!(
        summary.contains(&format!("| **Failed release** | `{rb}` (not live) |")),
        "{summary}"
    );
    assert!(
        run.stdout.contains(&format!("failed:    {rb} (not live)")),
        "{}",
        run.stdout
    );

    // C fails before switching: nothing changed, no backup of the run left.
    local.write_config(&a, &FAST.replace("install = \"true\"", "install = \"false\""));
    let backups = local.backups();
    let (run, out, _) = local.run_in_actions_files(&["deploy", "-e", "staging", "--sha", &c]);
    run.expect(1);
    assert_eq!(out.get("status").map(String::as_str), Some("failure"), "{out:?}");
    assert_eq!(out.get("release"), Some(&ra), "{out:?}");
    assert_eq!(out.get("backup").map(String::as_str), Some(""), "{out:?}");
    assert_eq!(local.backups(), backups, "the run's backup was dropped");

    // A failed rollback: the release output is what is live after it.
    local.write_config(&d, FAST);
    local.deploy(&d).expect(0);
    let rd = local.current_id();
    let (run, out, summary) = local.run_in_actions_files(&["rollback", "-e", "staging"]);
    run.expect(1);
    assert_eq!(local.current_id(), rd);
    assert_eq!(out.get("status").map(String::as_str), Some("failure"), "{out:?}");
    assert_eq!(out.get("release"), Some(&rd), "{out:?}");
    assert!(summary.contains(&format!("| **Release** | `{rd}` |")), "{summary}");
}
