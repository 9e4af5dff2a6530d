//! Issue #4: GitHub gates, deployments and check runs, every request going through Prism with
//! GitHub's OpenAPI description in front of a stateful fake (tests/github/fake.js).

mod support;

use std::process::Command;

use serde_json::json;
use support::github::{github, http};
use support::{Run, Sandbox, sha};

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

/// A config whose only host is a closed port: a run that gets past the gates fails to connect
/// (exit 1); one refused by a gate never tries (exit 3).
fn gate_config(dir: &std::path::Path) -> std::path::PathBuf {
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
checks_timeout = "2s"
checks_interval = "200ms"
connect_timeout = "2s"
[environments.staging]
deploy_dir = "/srv/gate-test"
backup_dir = "/srv/gate-test-backups"
branch = "develop"
required_checks = ["lint", "unit"]
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

/// `tj-deploy <command> -e <env> --sha <commit>` with the gate config, reporting to `repo` on
/// the fake GitHub as a run on `git_ref`. The directory holds the config: keep it until the run.
fn gated_cmd(command: &str, repo: &str, env: &str, git_ref: &str, commit: &str) -> (tempfile::TempDir, Command) {
    let dir = tempfile::tempdir().unwrap();
    let config = gate_config(dir.path());
    let mut c = Command::new(support::bin());
    c.args([
        command,
        "-e",
        env,
        "--sha",
        commit,
        "--known-hosts-file",
        "/dev/null",
        "--config",
    ])
    .arg(&config)
    .env_remove("GITHUB_ACTIONS")
    .env("HOME", dir.path());
    with_github(&mut c, repo, git_ref);
    (dir, c)
}

fn gated(repo: &str, env: &str, git_ref: &str, commit: &str) -> Run {
    let (_dir, mut c) = gated_cmd("deploy", repo, env, git_ref, commit);
    Run::of(c.output().unwrap())
}

/// The states a deployment went through, oldest first.
fn status_states(deployment: &serde_json::Value) -> Vec<String> {
    deployment["statuses"]
        .as_array()
        .expect("statuses in the fake's deployment")
        .iter()
        .map(|s| s["state"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The check runs tj-deploy created (the fake marks them `own`).
fn own_check_runs(state: &serde_json::Value) -> Vec<serde_json::Value> {
    state["check_runs"]
        .as_array()
        .expect("check_runs in the fake's state")
        .iter()
        .filter(|c| c["own"] == true)
        .cloned()
        .collect()
}

fn green(commit: &str) -> serde_json::Value {
    json!([{"name": "lint", "head_sha": commit}, {"name": "unit", "head_sha": commit}])
}

#[test]
fn gates_refuse_with_exit_3_and_touch_no_host() {
    let g = github();
    let (s1, s2, s3) = (sha(1), sha(2), sha(3));

    // (repo, GitHub's state, environment, ref, exit code, what the error line must say)
    let cases = [
        (
            "o/wrong-branch",
            json!({"branches": {"develop": [s1]}, "check_runs": green(&s1)}),
            "staging",
            "refs/heads/feature",
            3,
            &["gate branch", "refs/heads/feature"][..],
        ),
        (
            "o/behind",
            json!({"branches": {"develop": [s1, s2, s3]}, "check_runs": green(&s1)}),
            "staging",
            "refs/heads/develop",
            3,
            &["2 commit(s) behind"],
        ),
        (
            "o/failed",
            json!({"branches": {"develop": [s1]}, "check_runs": [{"name": "lint", "head_sha": s1}, {"name": "unit", "head_sha": s1, "conclusion": "failure"}]}),
            "staging",
            "refs/heads/develop",
            3,
            &["failed: unit: failure"],
        ),
        (
            "o/missing",
            json!({"branches": {"develop": [s1]}, "check_runs": [{"name": "lint", "head_sha": s1}]}),
            "staging",
            "refs/heads/develop",
            3,
            &["still pending", "unit: not reported"],
        ),
        (
            "o/prod",
            json!({"branches": {"main": [s1]}}),
            "production",
            "refs/heads/main",
            3,
            &["gate staging first", "not been deployed to staging"],
        ),
        // Past the gates it tries the (closed) host.
        (
            "o/prod-ok",
            json!({"branches": {"main": [s1]}, "deployments": [{"sha": s1, "environment": "staging", "state": "success"}]}),
            "production",
            "refs/heads/main",
            1,
            &["connect"],
        ),
    ];
    for (repo, state, env, git_ref, code, says) in cases {
        g.setup(repo, state);
        let run = gated(repo, env, git_ref, &s1);
        run.expect(code);
        for want in says {
            assert!(run.error_line().contains(want), "{repo}: {want}: {}", run.all());
        }
    }

    // A check still running is waited for; then the deploy proceeds (to the closed host).
    g.setup(
        "o/pending",
        json!({"branches": {"develop": [s1]}, "check_runs": [{"name": "lint", "head_sha": s1}, {"name": "unit", "head_sha": s1, "status": "in_progress", "complete_after": 3}]}),
    );
    let run = gated("o/pending", "staging", "refs/heads/develop", &s1);
    run.expect(1);
    assert!(
        run.all().contains("waiting up to") && run.all().contains("✓ gate required checks"),
        "{}",
        run.all()
    );
    let state = g.state("o/pending");
    let own = own_check_runs(&state);
    assert_eq!(own.len(), 1);
    assert_eq!(
        own[0]["conclusion"], "failure",
        "the check run records the failed connect"
    );

    // The refused runs' check runs completed as failures with the reason.
    let state = g.state("o/behind");
    let own = state["check_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["own"] == true)
        .expect("our check run")
        .clone();
    assert_eq!(own["name"], "tj-deploy / staging");
    assert_eq!(own["conclusion"], "failure");
    assert!(own["output_summary"].as_str().unwrap().contains("behind"), "{own}");

    for repo in [
        "o/wrong-branch",
        "o/behind",
        "o/failed",
        "o/missing",
        "o/prod",
        "o/prod-ok",
        "o/pending",
    ] {
        assert_eq!(
            g.violations(repo),
            Vec::<String>::new(),
            "Prism found contract violations for {repo}"
        );
    }
}

#[test]
fn github_unreachable_or_failing_fails_closed() {
    let g = github();
    let s1 = sha(1);
    g.setup(
        "o/down",
        json!({"branches": {"develop": [s1]}, "check_runs": green(&s1)}),
    );
    g.fault(json!({"method": "GET", "path": "/repos/o/down/branches", "status": 500, "times": 10}));
    let run = gated("o/down", "staging", "refs/heads/develop", &s1);
    run.expect(3);
    assert!(run.error_line().contains("HTTP 500"), "{}", run.error_line());

    let (_dir, mut c) = gated_cmd("deploy", "o/down", "staging", "refs/heads/develop", &s1);
    c.env("GITHUB_API_URL", format!("http://127.0.0.1:{}", support::free_port()));
    let run = Run::of(c.output().unwrap());
    run.expect(3);
    assert!(run.error_line().contains("gate branch head"), "{}", run.error_line());
}

#[test]
fn a_malformed_request_is_rejected_by_prism() {
    let g = github();
    g.setup("o/negative", json!({"branches": {"develop": [sha(1)]}}));
    let auth = format!("token {TOKEN}");
    let headers = [("Authorization", auth.as_str()), ("Accept", "application/json")];
    let (status, body) = http(
        g.api_port,
        "POST",
        "/repos/o/negative/deployments",
        &headers,
        Some(&json!({"ref": sha(1), "auto_merge": "yes"})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("auto_merge"), "{body}");
    assert!(
        !g.violations("o/negative").is_empty(),
        "the violation is in Prism's log"
    );
    assert_eq!(
        g.state("o/negative")["deployments"].as_array().unwrap().len(),
        0,
        "never reached the fake"
    );
}

/// Issue #7 (8): GitHub failing once the deploy is under way (every deployment status after
/// the first, every check-run update) costs warnings, never the result.
#[test]
fn github_failing_after_the_gates_is_a_warning_not_a_failure() {
    let g = github();
    let sb = Sandbox::new("ghlate");
    let s1 = sha(1);
    sb.write_config("required_checks = [\"lint\"]");
    g.setup(
        "o/late",
        json!({"branches": {"develop": [s1]}, "check_runs": [{"name": "lint", "head_sha": s1}]}),
    );
    g.fault(json!({"method": "POST", "path": "/repos/o/late/deployments/", "status": 500, "times": 50, "skip": 1}));
    g.fault(json!({"method": "PATCH", "path": "/repos/o/late/check-runs/", "status": 500, "times": 50}));
    let mut c = sb.cmd(&["deploy", "-e", "staging", "--sha", &s1]);
    with_github(&mut c, "o/late", "refs/heads/develop");
    let run = Run::of(c.output().unwrap());
    run.expect(0);
    assert!(run.all().contains("500"), "the failure is reported: {}", run.all());
    assert!(!run.all().contains("error: "), "no error line: {}", run.all());
    assert_eq!(sb.revision().as_deref(), Some(s1.as_str()), "the deploy stands");
    let state = g.state("o/late");
    assert_eq!(status_states(&state["deployments"][0]), ["in_progress"]);
    assert_eq!(g.violations("o/late"), Vec::<String>::new());
}

/// A real deploy reports in_progress → success and a successful check run; a broken one
/// reports failure. A 502 after the deployment was created does not create a second one, and
/// a 429 with Retry-After is waited out.
#[test]
fn deploys_report_deployments_and_check_runs() {
    let g = github();
    let sb = Sandbox::new("gh");
    let (s1, s2) = (sha(1), sha(2));
    sb.write_config("required_checks = [\"lint\"]\nchecks_interval = \"200ms\"");
    g.setup(
        "o/app",
        json!({"branches": {"develop": [s1]}, "check_runs": [{"name": "lint", "head_sha": s1}]}),
    );
    g.fault(json!({"method": "POST", "path": "/repos/o/app/deployments", "status": 502, "times": 1, "after": true}));
    g.fault(json!({"method": "POST", "path": "/repos/o/app/check-runs", "status": 429, "times": 1, "retry_after": 1}));
    let mut c = sb.cmd(&["deploy", "-e", "staging", "--sha", &s1]);
    with_github(&mut c, "o/app", "refs/heads/develop");
    let t0 = std::time::Instant::now();
    let run = Run::of(c.output().unwrap());
    run.expect(0);
    assert!(
        t0.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 was waited out"
    );
    let state = g.state("o/app");
    let deployments = state["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 1, "exactly one deployment despite the 502: {state}");
    let d = &deployments[0];
    assert_eq!(d["environment"], "staging");
    assert_eq!(d["request"]["auto_merge"], false);
    assert_eq!(d["request"]["required_contexts"], json!([]));
    assert_eq!(d["request"]["production_environment"], false);
    assert_eq!(status_states(d), ["in_progress", "success"]);
    let last = d["statuses"].as_array().unwrap().last().unwrap();
    assert_eq!(last["environment_url"], format!("http://127.0.0.1:{}", sb.app_port));
    assert_eq!(last["log_url"], "https://github.com/o/app/actions/runs/4242");
    let own = own_check_runs(&state);
    assert_eq!(own.len(), 1, "one check run despite the 429");
    assert_eq!(own[0]["status"], "completed");
    assert_eq!(own[0]["conclusion"], "success");
    assert!(
        own[0]["output_summary"].as_str().unwrap().contains("deploy success"),
        "{}",
        own[0]
    );

    // A broken release: failure everywhere, v1 serves again.
    sb.set_app("2.0.0", true);
    sb.write_config("required_checks = [\"lint\"]\nchecks_interval = \"200ms\"\nhealth_timeout = \"3s\"");
    g.setup(
        "o/app2",
        json!({"branches": {"develop": [s1, s2]}, "check_runs": [{"name": "lint", "head_sha": s2}]}),
    );
    let mut c = sb.cmd(&["deploy", "-e", "staging", "--sha", &s2]);
    with_github(&mut c, "o/app2", "refs/heads/develop");
    Run::of(c.output().unwrap()).expect(1);
    let state = g.state("o/app2");
    let d = &state["deployments"][0];
    assert_eq!(status_states(d), ["in_progress", "failure"]);
    let own = own_check_runs(&state)[0].clone();
    assert_eq!(own["conclusion"], "failure");
    assert_eq!(sb.revision().as_deref(), Some(s1.as_str()));
    for repo in ["o/app", "o/app2"] {
        assert_eq!(
            g.violations(repo),
            Vec::<String>::new(),
            "Prism found contract violations for {repo}"
        );
    }

    // No token: the deploy runs and says once that GitHub is off.
    sb.set_app("3.0.0", false);
    let run = sb.deploy(&sha(3));
    run.expect(0);
    assert_eq!(
        run.all().matches("GitHub reporting and gates are off").count(),
        1,
        "{}",
        run.all()
    );
}

/// `check` for pull requests: gates, package and plan, posted as a check run; no host touched.
#[test]
fn pr_check_posts_a_check_run_and_touches_no_host() {
    let g = github();
    let s1 = sha(1);
    g.setup("o/pr", json!({"branches": {"develop": [s1]}, "check_runs": green(&s1)}));
    let (_dir, mut c) = gated_cmd("check", "o/pr", "staging", "refs/pull/7/merge", &s1);
    let run = Run::of(c.output().unwrap());
    run.expect(0);
    assert!(
        run.stdout.contains("ready to deploy") && run.stdout.contains("switch"),
        "{}",
        run.stdout
    );
    let state = g.state("o/pr");
    let own = own_check_runs(&state)[0].clone();
    assert_eq!(own["conclusion"], "success");
    assert!(
        own["output_summary"]
            .as_str()
            .unwrap()
            .contains("Pre-deployment checklist"),
        "{own}"
    );

    // A read-only token (fork PR): a warning, and the check still runs.
    g.setup(
        "o/fork",
        json!({"branches": {"develop": [s1]}, "check_runs": green(&s1), "read_only": true}),
    );
    let (_dir, mut c) = gated_cmd("check", "o/fork", "staging", "refs/pull/8/merge", &s1);
    let run = Run::of(c.output().unwrap());
    run.expect(0);
    assert!(run.all().contains("403"), "{}", run.all());
}
