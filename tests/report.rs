//! Issue #5: the run summary everywhere — golden markdown and Slack payloads, Slack's limits,
//! and an end-to-end deploy that reports to a Slack stand-in, the job summary, the step outputs
//! and both server logs without a single secret byte anywhere.

mod support;

use std::path::PathBuf;

use serde_json::json;
use support::github::github;
use support::slack::{SlackReceiver, block_kit_violations};
use support::{Run, Sandbox, sha};
use tj_deploy::github::gates::Gate;
use tj_deploy::health::CheckResult;
use tj_deploy::notify::slack;
use tj_deploy::report::{Change, Status, StepRecord, Summary};

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs from the golden file (UPDATE_GOLDEN=1 rewrites it after review)"
    );
}

fn base(status: Status, message: &str) -> Summary {
    Summary {
        command: "deploy".into(),
        status,
        environment: "staging".into(),
        app: "trading-journal".into(),
        hosts: vec!["deploy@staging.tradingjournal.app".into()],
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        commit_url: Some("https://github.com/org/tj/commit/0123456789abcdef0123456789abcdef01234567".into()),
        branch: Some("develop".into()),
        release: Some("20260118_143000".into()),
        failed_release: None,
        backup: Some("20260118_143000".into()),
        previous_release: Some("20260117_090000".into()),
        actor: "alice".into(),
        run_url: Some("https://github.com/org/tj/actions/runs/42".into()),
        started_at: "2026-01-18T14:30:00Z".into(),
        finished_at: "2026-01-18T14:30:42Z".into(),
        duration_seconds: 42.0,
        message: message.into(),
        environment_url: Some("https://staging.tradingjournal.app".into()),
        gates: vec![
            Gate {
                name: "branch".into(),
                ok: true,
                reason: "refs/heads/develop is develop".into(),
            },
            Gate {
                name: "required checks".into(),
                ok: true,
                reason: "lint: success, unit: success".into(),
            },
        ],
        steps: vec![
            StepRecord {
                host: "staging".into(),
                name: "backup".into(),
                seconds: 1.2,
                ok: true,
                note: String::new(),
            },
            StepRecord {
                host: "staging".into(),
                name: "reload".into(),
                seconds: 2.5,
                ok: true,
                note: String::new(),
            },
        ],
        checks: vec![CheckResult {
            name: "GET /api/health".into(),
            status: Some(200),
            latency_ms: 12,
            ok: true,
            note: "healthy".into(),
        }],
        changes: vec![Change {
            sha: "fedcba9876543210fedcba9876543210fedcba98".into(),
            subject: "Add broker import".into(),
        }],
        changes_total: 3,
        migrations: vec!["20260115000000_add_notes".into()],
        migration_review: None,
        warnings: Vec::new(),
        availability: None,
        watch: None,
        package: None,
    }
}

fn cases() -> Vec<(&'static str, Summary)> {
    let ok = base(
        Status::Success,
        "release 20260118_143000 (commit 0123456) is live on 1 host(s)",
    );
    let mut rolled = base(
        Status::RolledBack,
        "deploy failed: health check https://staging.tradingjournal.app/api/health did not pass within 60.0s: HTTP 503. staging: rolled back, release 20260117_090000 (commit 89abcde) is serving again; 20260118_143000 is marked BAD_RELEASE.",
    );
    rolled.checks.push(CheckResult {
        name: "GET /api/health".into(),
        status: Some(503),
        latency_ms: 8,
        ok: false,
        note: "HTTP 503".into(),
    });
    // The ecosystem lint's finding rides along in every summary (issue #12).
    rolled.warnings.push(
        "ecosystem.config.js: app 'tj': runs in fork mode: a reload is a restart (downtime); set exec_mode: 'cluster' and instances: 2".into(),
    );
    let mut refused = base(
        Status::Refused,
        "gate required checks: failed: unit: failure; nothing was changed",
    );
    refused.gates[1] = Gate {
        name: "required checks".into(),
        ok: false,
        reason: "failed: unit: failure".into(),
    };
    refused.release = None;
    refused.backup = None;
    refused.steps.clear();
    refused.checks.clear();
    vec![("success", ok), ("rolled-back", rolled), ("refused", refused)]
}

#[test]
fn golden_markdown_and_slack_payloads() {
    for (name, s) in cases() {
        if !s.warnings.is_empty() {
            assert!(
                s.to_text().contains("  warnings:\n    ⚠ ecosystem.config.js: app 'tj'"),
                "{}",
                s.to_text()
            );
        }
        golden(&format!("{name}.md"), &s.to_markdown());
        let payload = slack::payload(&s);
        assert_eq!(block_kit_violations(&payload), Vec::<String>::new(), "{name}");
        golden(
            &format!("{name}.slack.json"),
            &(serde_json::to_string_pretty(&payload).unwrap() + "\n"),
        );
    }
}

#[test]
fn slack_payload_stays_within_limits_with_500_changes_and_long_text() {
    let mut s = base(Status::Success, &"a very long message ".repeat(400));
    s.app = "x".repeat(300);
    s.actor = "<script>&".repeat(300);
    s.changes = (0..500)
        .map(|i| Change {
            sha: format!("{i:040x}"),
            subject: format!("change number {i} ").repeat(20),
        })
        .collect();
    s.changes_total = 500;
    s.migrations = (0..300)
        .map(|i| format!("{i:014}_migration_with_a_long_name"))
        .collect();
    let payload = slack::payload(&s);
    assert_eq!(block_kit_violations(&payload), Vec::<String>::new());
    let text = payload.to_string();
    assert!(text.contains("more"), "the cut lists say how many did not fit");
    assert!(!text.contains("<script>"), "mrkdwn is escaped");
}

/// Issue #5, must-show 2 and 3: a full deploy and a failing one report to Slack (through one
/// 429), the job summary, the outputs and both server logs, and none of the secrets appears
/// in any byte written.
#[test]
fn deploy_reports_everywhere_and_leaks_no_secret() {
    let g = github();
    let sb = Sandbox::new("report");
    let slack_rx = SlackReceiver::start(1);
    let token = "ghs_SeCrEtToKeN_0123456789abcdef";
    let key_text = std::fs::read_to_string(&sb.sshd.key).unwrap();
    let summary_file = sb.root.join("step_summary.md");
    let output_file = sb.root.join("github_output");
    let (s1, s2) = (sha(1), sha(2));
    g.setup("o/rep", json!({"branches": {"develop": [s1]}, "check_runs": []}));

    let run_deploy = |commit: &str| {
        // The key comes as text, as the action input does, not as a file.
        let mut c2 = std::process::Command::new(support::bin());
        c2.args(["deploy", "-e", "staging", "--sha", commit, "--config"])
            .arg(&sb.config)
            .arg("--known-hosts-file")
            .arg(&sb.sshd.known_hosts);
        c2.env_remove("GITHUB_ACTIONS")
            .env("GITHUB_ACTIONS", "true")
            .env("INPUT_SSH-KEY", &key_text)
            .env("INPUT_GITHUB-TOKEN", token)
            .env("INPUT_SLACK-WEBHOOK", &slack_rx.url)
            .env("INPUT_SLACK-ON-START", "true")
            .env("GITHUB_REPOSITORY", "o/rep")
            .env("GITHUB_API_URL", g.api_url())
            .env("GITHUB_REF", "refs/heads/develop")
            .env("GITHUB_RUN_ID", "77")
            .env("GITHUB_SERVER_URL", "https://github.com")
            .env("GITHUB_STEP_SUMMARY", &summary_file)
            .env("GITHUB_OUTPUT", &output_file)
            .env("TJ_GITHUB_BACKOFF_MS", "50");
        Run::of(c2.output().unwrap())
    };

    let first = run_deploy(&s1);
    first.expect(0);
    g.setup("o/rep", json!({"branches": {"develop": [s1, s2]}, "check_runs": []}));
    sb.set_app("2.0.0", false);
    let second = run_deploy(&s2);
    second.expect(0);
    sb.set_app("3.0.0", true);
    sb.write_config("health_timeout = \"3s\"");
    g.setup(
        "o/rep",
        json!({"branches": {"develop": [s1, s2, sha(3)]}, "check_runs": []}),
    );
    let third = run_deploy(&sha(3));
    third.expect(1);

    // Slack: start + end for each run, the 429 waited out, all within Block Kit's limits.
    let bodies = slack_rx.bodies();
    assert_eq!(bodies.len(), 6, "{bodies:?}");
    for b in &bodies {
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(block_kit_violations(&v), Vec::<String>::new(), "{b}");
    }
    assert!(
        bodies[3].contains("deploy success") && bodies[3].contains("change 1"),
        "changes since v1: {}",
        bodies[3]
    );
    assert!(bodies[5].contains("rolled-back"), "{}", bodies[5]);

    // Job summary and outputs name the real ids; the server logs carry every run.
    let releases = sb.releases();
    let md = std::fs::read_to_string(&summary_file).unwrap();
    assert!(
        md.contains(&format!("`{}`", releases[1])) && md.contains("### Database migrations"),
        "{md}"
    );
    assert!(
        md.contains("20260101000000_init"),
        "migrations applied by v1 are listed: {md}"
    );
    let outputs = std::fs::read_to_string(&output_file).unwrap();
    assert!(
        outputs.contains("\nrolled-back\n") && outputs.contains(&format!("\n{}\n", releases[1])),
        "{outputs}"
    );
    let server_md = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.md")).unwrap();
    assert!(
        server_md.find("rolled-back").unwrap() < server_md.find("deploy success").unwrap(),
        "newest first"
    );
    assert!(server_md.contains(&releases[2]));
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    assert_eq!(log.lines().count(), 3);

    // Not one secret byte anywhere we wrote.
    // `::add-mask::` lines are read (and hidden) by the Actions runner: they are how masking works.
    let shown = |r: &Run| {
        r.all()
            .lines()
            .filter(|l| !l.starts_with("::add-mask::"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut everything = vec![
        shown(&first),
        shown(&second),
        shown(&third),
        md,
        outputs,
        server_md,
        log,
        bodies.join("\n"),
    ];
    everything.push(g.state("o/rep").to_string());
    let secrets: Vec<String> = [
        token.to_string(),
        slack_rx.url.clone(),
        "sEcReTwEbHoOk".to_string(),
        support::PG_PASSWORD.to_string(),
    ]
    .into_iter()
    .chain(
        key_text
            .lines()
            .filter(|l| l.len() > 20 && !l.starts_with("-----"))
            .map(str::to_string),
    )
    .collect();
    for (i, text) in everything.iter().enumerate() {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "secret leaked in output #{i}");
        }
    }
    // The key's lines are masked for the Actions log.
    assert!(first.stdout.contains("::add-mask::"), "secrets are masked first");
}
