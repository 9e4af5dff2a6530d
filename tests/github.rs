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
    // A short post-deploy watch: the check run stays in_progress with a progress line.
    sb.write_config(
        "required_checks = [\"lint\"]\nchecks_interval = \"200ms\"\n[environments.staging.watch]\n\
         duration = \"2s\"\ninterval = \"1s\"\ninitial_delay = \"0s\"\nmin_requests = 1\n\
         cpu = { warning = \"100%\", critical = \"100%\" }",
    );
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
    let updates = own[0]["updates"].as_array().unwrap();
    assert!(
        updates.iter().any(|u| u["status"] == "in_progress"
            && u["output"]["title"]
                .as_str()
                .unwrap_or("")
                .starts_with("watching the release")),
        "the watch's progress line: {updates:?}"
    );
    assert!(
        own[0]["output_summary"].as_str().unwrap().contains("watch passed"),
        "{}",
        own[0]
    );
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

/// A repository checked out the way `actions/checkout` leaves a `pull_request` job: the sample
/// app on `develop` (base), a `feature` branch adding migrations (head), and GitHub's temporary
/// merge commit of the two checked out. Returns (dir, base, head, merge).
fn pr_checkout(migrations: &[(&str, &str)]) -> (tempfile::TempDir, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    support::sh_ok(&format!(
        "cp -r {} {r} && cd {r} && git init -q -b develop && git -c user.name=t -c user.email=t@t add -A && git -c user.name=t -c user.email=t@t commit -qm base",
        support::repo().join("examples/trading-journal").display(),
        r = repo.display()
    ));
    let git = |args: &str| {
        support::sh_ok(&format!(
            "cd {} && git -c user.name=t -c user.email=t@t {args}",
            repo.display()
        ))
        .trim()
        .to_string()
    };
    let base = git("rev-parse HEAD");
    git("checkout -qb feature");
    for (name, sql) in migrations {
        let d = repo.join("prisma/migrations").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("migration.sql"), sql).unwrap();
    }
    git("add -A");
    git("commit -q --allow-empty -m feature");
    let head = git("rev-parse HEAD");
    git("checkout -q --detach develop");
    git("merge -q --no-ff -m merge feature");
    let merge = git("rev-parse HEAD");
    let closed = support::free_port();
    std::fs::write(
        repo.join("tj-deploy.toml"),
        format!(
            r#"app = "trading-journal"
[defaults]
hosts = ["deploy@127.0.0.1:{closed}"]
health_url = "http://127.0.0.1:{closed}/api/health"
checks_timeout = "2s"
checks_interval = "200ms"
[environments.staging]
deploy_dir = "/srv/pr-test"
backup_dir = "/srv/pr-test-backups"
branch = "develop"
required_checks = ["lint", "unit"]
require_staging = true
"#
        ),
    )
    .unwrap();
    (dir, base, head, merge)
}

/// `tj-deploy` started with exactly what GitHub gives a `pull_request` job running the action
/// with `command: check`: inputs as INPUT_*, GITHUB_SHA the merge commit, the event payload.
fn pull_request_job(dir: &std::path::Path, repo: &str, number: u64, base: &str, head: &str, merge: &str) -> Command {
    let event = dir.join("event.json");
    let payload = json!({
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"sha": head, "ref": "feature", "repo": {"full_name": "someone/app"}},
            "base": {"sha": base, "ref": "develop", "repo": {"full_name": repo}},
        },
        "repository": {"full_name": repo},
    });
    std::fs::write(&event, payload.to_string()).unwrap();
    let mut c = Command::new(support::bin());
    c.current_dir(dir.join("repo"))
        .env("HOME", dir)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_EVENT_PATH", &event)
        .env("GITHUB_SHA", merge)
        .env("GITHUB_BASE_REF", "develop")
        .env("GITHUB_HEAD_REF", "feature")
        .env("GITHUB_WORKSPACE", dir.join("repo"))
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"))
        .env("GITHUB_OUTPUT", dir.join("output"))
        .env("INPUT_COMMAND", "check")
        .env("INPUT_ENVIRONMENT", "staging")
        .env("INPUT_CONFIG", "tj-deploy.toml")
        .env("INPUT_SHA", "")
        .env("INPUT_GITHUB-TOKEN", TOKEN)
        .env_remove("GITHUB_TOKEN");
    with_github(&mut c, repo, &format!("refs/pull/{number}/merge"));
    c.env_remove("GITHUB_TOKEN");
    c
}

/// Issue #17: in a `pull_request` job the check run, the gates and the summary are about the
/// PR's head commit, not GitHub's temporary merge commit; the migrations the PR adds are
/// reviewed and every flagged statement is an annotation on its line (in batches of 50).
#[test]
fn pr_check_reports_on_the_pull_request_head_with_migration_annotations() {
    let g = github();
    let truncates: String = (0..55).map(|i| format!("TRUNCATE t{i};\n")).collect();
    let (dir, base, head, merge) = pr_checkout(&[
        (
            "20260201000000_drop_notes",
            "-- DROP TABLE trades;\nALTER TABLE trades DROP COLUMN notes;\nINSERT INTO log VALUES ('DELETE FROM x');\n",
        ),
        ("20260202000000_cleanup", &truncates),
    ]);
    // The merge commit carries a failing `unit`: gates that read it would refuse.
    g.setup(
        "o/prhead",
        json!({
            "branches": {"develop": [base]},
            "check_runs": [
                {"name": "lint", "head_sha": head}, {"name": "unit", "head_sha": head},
                {"name": "unit", "head_sha": merge, "conclusion": "failure"},
            ],
        }),
    );
    let run = Run::of(
        pull_request_job(dir.path(), "o/prhead", 7, &base, &head, &merge)
            .output()
            .unwrap(),
    );
    run.expect(0);
    let state = g.state("o/prhead");
    let own = own_check_runs(&state);
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0]["head_sha"], head.as_str(), "the check run is on the PR head");
    let on_merge = state["check_runs_by_head_sha"][&merge].as_array().unwrap();
    assert!(
        on_merge.iter().all(|c| c["own"] != true),
        "no check run on the merge commit"
    );
    assert_eq!(
        own[0]["conclusion"], "neutral",
        "flagged statements make the check neutral"
    );

    let updates = own[0]["updates"].as_array().unwrap();
    let annotations: Vec<&serde_json::Value> = updates
        .iter()
        .flat_map(|u| u["output"]["annotations"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(annotations.len(), 56, "{updates:?}");
    assert!(
        updates
            .iter()
            .all(|u| { u["output"]["annotations"].as_array().map_or(0, Vec::len) <= 50 })
    );
    let drop = annotations
        .iter()
        .find(|a| a["title"].as_str().unwrap_or("").contains("DROP COLUMN"))
        .expect("a DROP COLUMN annotation");
    assert_eq!(
        drop["path"],
        "prisma/migrations/20260201000000_drop_notes/migration.sql"
    );
    assert_eq!(
        (drop["start_line"].as_u64(), drop["end_line"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(drop["annotation_level"], "warning");
    assert!(
        !annotations
            .iter()
            .any(|a| a["title"].as_str().unwrap_or("").contains("DROP TABLE"))
    );

    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    for needle in [
        "#7 feature → develop",
        &head[..7],
        "20260201000000_drop_notes",
        "20260202000000_cleanup",
        "DROP COLUMN",
        "staging first: information",
    ] {
        assert!(summary.contains(needle), "{needle} missing from:\n{summary}");
    }
    assert!(
        !summary.contains("`20260101000000_init`"),
        "the base's migrations are not pending:\n{summary}"
    );
    // The gates read the PR head (green), never the merge commit (red).
    let log: Vec<String> = serde_json::from_value(state["log"].clone()).unwrap();
    assert!(log.iter().all(|l| !l.contains(&merge)), "{log:?}");
    assert!(g.violations("o/prhead").is_empty(), "{:?}", g.violations("o/prhead"));

    // A PR that targets another branch fails the branch gate (it asks the target, not a ref).
    let (dir, base, head, merge) = pr_checkout(&[]);
    g.setup(
        "o/prmain",
        json!({"branches": {"develop": [base]}, "check_runs": green(&head)}),
    );
    let mut c = pull_request_job(dir.path(), "o/prmain", 9, &base, &head, &merge);
    let event = dir.path().join("event.json");
    let text = std::fs::read_to_string(&event)
        .unwrap()
        .replace("\"develop\"", "\"main\"");
    std::fs::write(&event, text).unwrap();
    let run = Run::of(c.output().unwrap());
    run.expect(3);
    assert!(run.all().contains("targets main, not develop"), "{}", run.all());
}

/// A fork PR's read-only token: GitHub answers 403 to the check run; the job summary still
/// has the report, the review (base from the compare API: the checkout has no history) and a
/// warning saying why there is no check run.
#[test]
fn fork_pr_check_writes_the_job_summary_with_a_warning() {
    let g = github();
    let (dir, base, head, merge) = pr_checkout(&[("20260203000000_rename", "ALTER TABLE trades RENAME TO deals;\n")]);
    // As after a shallow checkout: no history, so the base commit is not there.
    std::fs::remove_dir_all(dir.path().join("repo/.git")).unwrap();
    g.setup(
        "o/forkpr",
        json!({
            "branches": {"develop": [base]},
            "check_runs": green(&head),
            "read_only": true,
            "compares": {format!("{base}...{head}"): {"files": [
                {"filename": "prisma/migrations/20260203000000_rename/migration.sql", "status": "added"},
                {"filename": "README.md", "status": "modified"},
            ]}},
        }),
    );
    let run = Run::of(
        pull_request_job(dir.path(), "o/forkpr", 8, &base, &head, &merge)
            .output()
            .unwrap(),
    );
    run.expect(0);
    assert!(run.all().contains("403"), "{}", run.all());
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    for needle in [
        "GitHub refused to create the check run",
        "#8 feature → develop",
        "20260203000000_rename",
        "RENAME TABLE",
    ] {
        assert!(summary.contains(needle), "{needle} missing from:\n{summary}");
    }
    assert!(!summary.contains("`20260115000000_add_notes`"), "{summary}");
    let state = g.state("o/forkpr");
    assert!(own_check_runs(&state).is_empty());
    let log: Vec<String> = serde_json::from_value(state["log"].clone()).unwrap();
    assert!(
        log.iter().any(|l| l.contains(&format!("/compare/{base}...{head}"))),
        "{log:?}"
    );
    assert!(g.violations("o/forkpr").is_empty(), "{:?}", g.violations("o/forkpr"));
}

/// Issue #17 (left open): the destructive-migrations gate runs before anything anyone sees.
/// A refused deploy makes no POST /deployments (no deployment, no deployment status); its
/// check run reports the refusal as the other gates' refusals are reported.
#[test]
fn a_refused_migration_creates_no_github_deployment() {
    let g = github();
    let sb = Sandbox::new("ghmig");
    let (s1, s2) = (sha(1), sha(2));
    sb.deploy(&s1).expect(0);
    let first = sb.current();
    let dir = sb.build_dir.join("prisma/migrations/20260301000000_drop_notes");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("migration.sql"), "ALTER TABLE trades DROP COLUMN notes;\n").unwrap();
    sb.write_config("required_checks = [\"lint\"]\ndestructive_migrations = \"confirm\"");
    g.setup(
        "o/migrefused",
        json!({"branches": {"develop": [s1, s2]}, "check_runs": [{"name": "lint", "head_sha": s2}]}),
    );
    let mut c = sb.cmd(&["deploy", "-e", "staging", "--sha", &s2]);
    with_github(&mut c, "o/migrefused", "refs/heads/develop");
    let run = Run::of(c.output().unwrap());
    run.expect(3);
    assert!(run.error_line().contains("DROP COLUMN"), "{}", run.all());
    let state = g.state("o/migrefused");
    let log: Vec<String> = serde_json::from_value(state["log"].clone()).unwrap();
    assert!(
        !log.iter().any(|l| l.starts_with("POST /deployments")),
        "no deployment nor status: {log:?}"
    );
    assert_eq!(state["deployments"], json!([]));
    let own = own_check_runs(&state);
    assert_eq!(own.len(), 1, "{state}");
    assert_eq!(own[0]["conclusion"], "failure");
    let summary = own[0]["output_summary"].as_str().unwrap();
    assert!(
        summary.contains("refused") && summary.contains("DROP COLUMN"),
        "{summary}"
    );
    assert_eq!(sb.current(), first);
    assert_eq!(g.violations("o/migrefused"), Vec::<String>::new());
}
