//! End-to-end deploys against a real OpenSSH server, PM2 running the sample app in cluster
//! mode, and PostgreSQL (see tests/support). Each test builds its own sandbox.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Sandbox, sha};

/// Issue #2, must-show 1–3: v1 deploys with the full layout and a restorable DB backup; v2
/// deploys under load with zero failed requests; a broken v3 is rolled back to v2.
#[test]
fn deploy_lifecycle_v1_v2_under_load_then_broken_v3_rolls_back() {
    let sb = Sandbox::new("life");
    let (v1, v2, v3) = (sha(1), sha(2), sha(3));

    // v1
    let run = sb.deploy(&v1);
    run.expect(0);
    assert!(run.stdout.contains("success"), "{}", run.stdout);
    assert_eq!(
        sb.revision().as_deref(),
        Some(v1.as_str()),
        "v1 must answer after deploy"
    );
    let releases = sb.releases();
    assert_eq!(releases.len(), 1, "{releases:?}");
    let r1 = &releases[0];
    assert_eq!(sb.current().as_deref(), Some(format!("releases/{r1}").as_str()));
    let d = &sb.deploy_dir;
    assert_eq!(
        std::fs::read_to_string(d.join("releases").join(r1).join("REVISION"))
            .unwrap()
            .trim(),
        v1
    );
    assert!(
        d.join("releases").join(r1).join(".env").is_symlink(),
        "shared .env linked"
    );
    assert!(d.join("shared/.env").is_file());
    assert!(!sb.lock_exists(), "lock released");
    let packages: Vec<_> = std::fs::read_dir(d.join(".tj-deploy/packages"))
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(packages.len(), 1);
    let log = std::fs::read_to_string(d.join(".tj-deploy/deployments.log")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(entry["status"], "success");
    assert_eq!(entry["commit"], v1.as_str());
    let b1 = sb.backups();
    assert_eq!(b1, vec![r1.clone()], "backup id equals release id");
    assert!(sb.backup_dir.join(r1).join("manifest.json").is_file());
    assert!(sb.backup_dir.join(r1).join("db.dump").is_file());
    assert!(
        !sb.backup_dir.join(r1).join("app.tar.gz").exists(),
        "nothing was live before v1"
    );
    // Migrations ran.
    assert_eq!(sb.pg.psql("tj", "SELECT count(*) FROM _tj_migrations"), "2");

    // Rows written while v1 is live end up in v2's pre-deploy backup.
    sb.pg.psql(
        "tj",
        "INSERT INTO trades (symbol, side, qty, price) SELECT 'AAPL', 'buy', g, 100 FROM generate_series(1, 7) g",
    );

    // v2 under load: at least 4 concurrent clients without keep-alive for the whole deploy.
    sb.set_app("2.0.0", false);
    let load = Command::new("node")
        .arg(support::repo().join("tests/support/load.js"))
        .arg(format!("http://127.0.0.1:{}/api/health", sb.app_port))
        .args(["8", "12"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let run = sb.deploy(&v2);
    let took = t0.elapsed();
    run.expect(0);
    let out = load.wait_with_output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("load.js prints JSON");
    println!("v2 deploy took {took:?}; load during it: {stats}");
    assert!(stats["requests"].as_u64().unwrap() > 500, "load too small: {stats}");
    assert_eq!(stats["failures"], 0, "requests failed during the v2 deploy: {stats}");
    assert!(
        stats["revisions"][&v2].as_u64().unwrap_or(0) > 0,
        "v2 never answered during the load: {stats}"
    );
    for _ in 0..20 {
        assert_eq!(
            sb.revision().as_deref(),
            Some(v2.as_str()),
            "only v2 answers after the deploy"
        );
    }
    let releases = sb.releases();
    assert_eq!(releases.len(), 2);
    let r2 = releases[1].clone();
    let b2 = sb.backup_dir.join(&r2);
    assert!(b2.join("package.tar.gz").is_file(), "v1's package saved in v2's backup");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b2.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["release"], r1.as_str());
    assert_eq!(manifest["commit"], v1.as_str());
    assert_eq!(manifest["kind"], "pre-deploy");

    // The dump restores into a scratch database with the same row counts.
    sb.pg.psql("postgres", "CREATE DATABASE scratch");
    let restore = support::sh(&format!(
        "pg_restore --no-owner --exit-on-error -h 127.0.0.1 -p {} -U postgres -d scratch {}",
        sb.pg.port,
        b2.join("db.dump").display()
    ));
    assert!(
        restore.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    assert_eq!(sb.pg.psql("scratch", "SELECT count(*) FROM trades"), "7");
    assert_eq!(sb.pg.psql("scratch", "SELECT count(*) FROM _tj_migrations"), "2");

    // v3 is broken: health fails, auto-rollback to v2.
    sb.set_app("3.0.0", true);
    sb.write_config("health_timeout = \"4s\"");
    let run = sb.deploy(&v3);
    run.expect(1);
    let err = run.error_line();
    assert!(err.contains("health check") && err.contains("HTTP 503"), "{err}");
    assert!(err.contains("serving again"), "{err}");
    assert_eq!(sb.revision().as_deref(), Some(v2.as_str()), "v2 serves again");
    assert_eq!(sb.current().as_deref(), Some(format!("releases/{r2}").as_str()));
    let releases = sb.releases();
    let r3 = releases.last().unwrap();
    assert!(
        sb.deploy_dir.join("releases").join(r3).join("BAD_RELEASE").is_file(),
        "v3 marked bad"
    );
    assert!(!sb.lock_exists(), "lock released after failure");
    let log = std::fs::read_to_string(d.join(".tj-deploy/deployments.log")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(entry["status"], "rolled-back");
}

/// Issue #2, must-show 5: every refusal gives its exit code and a one-line error naming the
/// cause, and leaves `current` and the lock as they were.
#[test]
fn refusals_and_bad_input_leave_the_host_unchanged() {
    let sb = Sandbox::new("refuse");
    sb.deploy(&sha(1)).expect(0);
    let before = sb.snapshot();

    // Wrong host key: a known_hosts naming another key for this host.
    let wrong = sb.root.join("wrong_known_hosts");
    support::sh_ok(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {0}/other && printf '[127.0.0.1]:{1} %s\\n' \"$(cut -d' ' -f1,2 {0}/other.pub)\" > {2}",
        sb.root.display(),
        sb.sshd.port,
        wrong.display()
    ));
    let run = support::Run::of(
        sb.cmd_with_known_hosts(&["deploy", "-e", "staging", "--sha", &sha(2)], &wrong)
            .output()
            .unwrap(),
    );
    run.expect(1);
    assert!(run.error_line().to_lowercase().contains("host key"), "{}", run.stderr);

    // Missing known_hosts file.
    let missing = std::path::Path::new("/nonexistent/known_hosts");
    let run = support::Run::of(
        sb.cmd_with_known_hosts(&["deploy", "-e", "staging", "--sha", &sha(2)], missing)
            .output()
            .unwrap(),
    );
    run.expect(2);
    assert!(
        run.error_line().contains("known-hosts-file") && run.error_line().contains("/nonexistent/known_hosts"),
        "{}",
        run.stderr
    );

    // Unknown environment, unknown key.
    let run = support::Run::of(sb.cmd(&["deploy", "-e", "prod", "--sha", &sha(2)]).output().unwrap());
    run.expect(2);
    assert!(
        run.error_line().contains("\"prod\"") && run.error_line().contains("staging"),
        "{}",
        run.stderr
    );
    sb.write_config("required_check = [\"lint\"]");
    let run = support::Run::of(sb.cmd(&["deploy", "-e", "staging", "--sha", &sha(2)]).output().unwrap());
    run.expect(2);
    assert!(run.error_line().contains("required_check"), "{}", run.stderr);
    sb.write_config("");

    assert_eq!(sb.snapshot(), before, "refused runs changed the host");

    // Deploy while locked: exit 3 naming the holder; the lock stays as it was.
    let lock = sb.deploy_dir.join(".tj-deploy/lock");
    std::fs::create_dir_all(&lock).unwrap();
    let owner = r#"{"actor":"alice","command":"deploy","environment":"staging","sha":null,"run_url":"https://github.com/o/r/actions/runs/42","started_at":"2026-11-27T10:00:00Z","token":"t-alice"}"#;
    std::fs::write(lock.join("owner.json"), owner).unwrap();
    support::sh_ok(&format!("chown -R deploy: {}", lock.display()));
    let before = sb.snapshot();
    let run = sb.deploy(&sha(2));
    run.expect(3);
    assert!(
        run.error_line().contains("alice") && run.error_line().contains("unlock"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(lock.join("owner.json")).unwrap(),
        owner,
        "someone else's lock untouched"
    );
    assert_eq!(sb.snapshot(), before);
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));

    // unlock names the holder and clears it; the next deploy goes through.
    let run = support::Run::of(sb.cmd(&["unlock", "-e", "staging"]).output().unwrap());
    run.expect(0);
    assert!(run.all().contains("alice"), "{}", run.all());
    assert!(!sb.lock_exists());

    // Re-deploying the same package uploads nothing. This run is an Actions run: the
    // environment comes from the hyphen-aware inputs, and outputs and job summary are written.
    let outputs = sb.root.join("github_output");
    let job_summary = sb.root.join("step_summary.md");
    let mut c = sb.cmd(&["deploy", "--sha", &sha(1)]);
    c.env("GITHUB_ACTIONS", "true")
        .env("INPUT_ENVIRONMENT", "staging")
        .env("INPUT_DRY-RUN", "")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", &job_summary);
    let run = support::Run::of(c.output().unwrap());
    run.expect(0);
    assert!(run.stdout.contains("already on the host"), "{}", run.stdout);
    assert!(
        run.stdout.contains("::group::") && run.stdout.contains("::endgroup::"),
        "{}",
        run.stdout
    );
    let outputs = std::fs::read_to_string(outputs).unwrap();
    assert!(
        outputs.contains("status<<ghadelimiter_") && outputs.contains("\nsuccess\n"),
        "{outputs}"
    );
    assert!(outputs.contains(&format!("\n{}\n", sha(1))), "{outputs}");
    let md = std::fs::read_to_string(job_summary).unwrap();
    assert!(md.contains("deploy success") && md.contains("| **Release** |"), "{md}");
}

/// Issue #2, must-show 6: a dry run lists every step and connects to nothing (its host is a
/// closed port, and nothing on the sandbox changes).
#[test]
fn dry_run_lists_every_step_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = support::repo().join("examples/trading-journal");
    let closed = support::free_port();
    let config = dir.path().join("tj-deploy.toml");
    std::fs::write(
        &config,
        format!(
            "app = \"trading-journal\"\n[package]\ndir = \"{}\"\n[environments.staging]\nhosts = [\"deploy@127.0.0.1:{closed}\"]\ndeploy_dir = \"/srv/x\"\nbackup_dir = \"/srv/x-backups\"\nhealth_url = \"http://127.0.0.1:{closed}/api/health\"\nsmoke = [\"GET /api/me 401\"]\n",
            app.display()
        ),
    )
    .unwrap();
    let out = Command::new(support::bin())
        .args(["deploy", "-e", "staging", "--dry-run", "--sha", &sha(9), "--config"])
        .arg(&config)
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap();
    let run = support::Run::of(out);
    run.expect(0);
    for step in [
        "package", "connect", "lock", "backup", "upload", "extract", "install", "migrate", "switch", "reload",
        "verify", "prune", "unlock",
    ] {
        assert!(run.stdout.contains(step), "plan lacks {step}:\n{}", run.stdout);
    }
    assert!(run.stdout.contains("GET /api/me 401"));
    assert!(!std::path::Path::new("/srv/x").exists());
}

/// Issue #2: SIGTERM mid-deploy stops the step, removes the unfinished release, releases the
/// lock, and leaves the previous release serving.
#[test]
fn sigterm_during_install_cleans_up_and_releases_the_lock() {
    let sb = Sandbox::new("sigterm");
    sb.deploy(&sha(1)).expect(0);
    let releases_before = sb.releases();
    let current_before = sb.current();

    sb.write_config("install = \"echo installing; sleep 30\"");
    let run = sb.start_deploy_until(&sha(2), |l| l.contains("installing"));
    assert!(sb.lock_exists(), "the lock is held while deploying");
    let t0 = Instant::now();
    run.signal("TERM");
    let seen = run.seen.clone();
    let (code, rest) = run.finish();
    let took = t0.elapsed();
    assert_eq!(code, Some(1), "{seen}{rest}");
    assert!(took < Duration::from_secs(15), "cleanup took {took:?}");
    assert!(rest.contains("cancelled by signal"), "{rest}");
    assert!(!sb.lock_exists(), "lock released after SIGTERM");
    assert_eq!(sb.current(), current_before);
    assert_eq!(sb.releases(), releases_before, "the unfinished release was removed");
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));
}

/// SIGTERM at later steps: during `migrate` (before the switch: release removed) and during
/// `reload` (after the switch: switched back to v1, which is reloaded and verified).
#[test]
fn sigterm_before_and_after_the_switch_leaves_v1_serving() {
    let sb = Sandbox::new("sigterm2");
    sb.deploy(&sha(1)).expect(0);
    let releases_before = sb.releases();
    let current_before = sb.current();
    let cases = [
        (
            "migrate",
            "migrate = \"if [ -f SLOW ]; then echo slow-step; sleep 30; fi; sh scripts/migrate.sh\"",
        ),
        (
            "reload",
            "reload = \"if [ -f SLOW ]; then echo slow-step; sleep 30; fi; pm2 startOrReload ecosystem.config.js --update-env\"",
        ),
    ];
    for (n, (step, extra)) in cases.iter().enumerate() {
        sb.write_config(extra);
        sb.set_app(&format!("{}.0.0", n + 2), false);
        std::fs::write(sb.build_dir.join("SLOW"), "").unwrap();
        let run = sb.start_deploy_until(&sha(n as u32 + 2), |l| l.contains("slow-step"));
        run.signal("TERM");
        let (code, rest) = run.finish();
        assert_eq!(code, Some(1), "{step}: {rest}");
        assert!(rest.contains("cancelled by signal"), "{step}: {rest}");
        assert!(!sb.lock_exists(), "{step}: lock released");
        assert_eq!(sb.current(), current_before, "{step}: current back on v1");
        assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()), "{step}: v1 serves");
        if *step == "reload" {
            assert!(rest.contains("serving again"), "{rest}");
            let bad = sb
                .releases()
                .into_iter()
                .find(|r| !releases_before.contains(r))
                .expect("the switched release stays, marked");
            assert!(sb.deploy_dir.join("releases").join(bad).join("BAD_RELEASE").is_file());
        } else {
            assert_eq!(sb.releases(), releases_before, "{step}: unfinished release removed");
        }
    }
}

/// Step names in the order a run first shows them: `▶ name [host] — …` and `✓ name [host]
/// (skipped: …)` lines.
fn step_names(output: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in output.lines() {
        let Some(rest) = line
            .strip_prefix("▶ ")
            .or_else(|| line.strip_prefix("✓ ").filter(|r| r.contains("(skipped")))
        else {
            continue;
        };
        let end = [" [", " —", " ("]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap_or(rest.len());
        let name = rest[..end].to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Issue #15: the plan a dry run prints is the pipeline that runs. The step names of
/// `deploy --dry-run` equal, in order, the steps a real deploy of the same config shows.
#[test]
fn the_dry_run_plan_is_the_deploy_that_runs() {
    let sb = Sandbox::new("plan");
    let dry = support::Run::of(
        sb.cmd(&["deploy", "-e", "staging", "--dry-run", "--sha", &sha(1)])
            .output()
            .unwrap(),
    );
    dry.expect(0);
    let planned = plan_names(&dry.stdout);
    assert!(planned.len() >= 12, "{}", dry.stdout);
    let real = sb.deploy(&sha(1));
    real.expect(0);
    assert_eq!(
        planned,
        step_names(&real.stderr),
        "plan vs run:\n{}\n---\n{}",
        dry.stdout,
        real.stderr
    );

    // The same for a rollback: its dry run prints the plan the rollback pipeline runs.
    sb.deploy(&sha(2)).expect(0);
    let dry = support::Run::of(sb.cmd(&["rollback", "-e", "staging", "--dry-run"]).output().unwrap());
    dry.expect(0);
    let planned = plan_names(&dry.stdout);
    let real = support::Run::of(sb.cmd(&["rollback", "-e", "staging"]).output().unwrap());
    real.expect(0);
    assert_eq!(
        planned,
        step_names(&real.stderr),
        "plan vs run:\n{}\n---\n{}",
        dry.stdout,
        real.stderr
    );
}

/// The step names of a printed plan (`  3. name             detail`), in order.
fn plan_names(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let (n, rest) = l.trim_start().split_once(". ")?;
            n.parse::<u32>().ok()?;
            Some(rest.get(..16).unwrap_or(rest).trim().to_string())
        })
        .collect()
}

/// Issue #14 item 11: when the health answer carries no revision, verification checks that
/// every PM2 worker runs in the new release. A reload that does nothing leaves the workers in
/// v1, the old code answers "healthy", and the deploy fails and rolls back instead of passing.
#[test]
fn verification_proves_the_new_code_serves() {
    let sb = Sandbox::new("norev");
    sb.set_app("1.0.0", false);
    std::fs::write(sb.build_dir.join("NO_REVISION"), "").unwrap();
    sb.deploy(&sha(1)).expect(0);
    let v1 = sb.current();
    sb.set_app("2.0.0", false);
    std::fs::write(sb.build_dir.join("NO_REVISION"), "").unwrap();
    sb.write_config("reload = \"true\"");
    let run = sb.deploy(&sha(2));
    run.expect(1);
    assert!(
        run.error_line().contains("no revision") && run.error_line().contains("still run outside releases/"),
        "{}",
        run.error_line()
    );
    assert_eq!(sb.current(), v1, "switched back");
    let health = sb.health().expect("v1 answers");
    assert_eq!(health.1["version"], "1.0.0");
}
