//! The day-two commands (issue #16) against the real sshd, PM2 and PostgreSQL of tests/support:
//! history, stats, status, restart.

mod support;

use std::io::Write as _;

use support::{DEPLOY_USER, Run, Sandbox, sh_ok, sha};

fn at(ago_minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(ago_minutes)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn run(sb: &Sandbox, args: &[&str]) -> Run {
    Run::of(sb.cmd(args).output().expect("run tj-deploy"))
}

/// `history` lists a real deploy and the hand-written runs; `stats` gives the hand-computed
/// figures: 3 deploys, one failed (restored 30 minutes later by the next deploy).
#[test]
fn history_and_stats_read_the_hosts_log() {
    let sb = Sandbox::new("hist");
    sb.deploy(&sha(1)).expect(0);
    let log = sb.deploy_dir.join(".tj-deploy/deployments.log");
    let lines = [
        serde_json::json!({"kind": "deploy", "id": "20200101_000001", "commit": sha(7), "status": "failure",
            "actor": "ana", "started_at": at(24 * 60 + 70), "finished_at": at(24 * 60 + 60)}),
        serde_json::json!({"kind": "deploy", "id": "20200101_000002", "commit": sha(8), "status": "success",
            "actor": "bo", "started_at": at(24 * 60 + 40), "finished_at": at(24 * 60 + 30)}),
        serde_json::json!({"kind": "deploy", "id": "20190101_000000", "commit": sha(9), "status": "success",
            "actor": "old", "started_at": at(40 * 24 * 60), "finished_at": at(40 * 24 * 60)}),
    ];
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("the deploy wrote a log");
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    sh_ok(&format!("chown {DEPLOY_USER}: {}", log.display()));

    let h = run(&sb, &["history", "-e", "staging", "--limit", "3", "--json"]);
    h.expect(0);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).expect("history --json");
    assert_eq!(v["hosts_not_read"], serde_json::json!([]), "{v}");
    let list = &v["runs"];
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(&ids[1..], ["20200101_000002", "20200101_000001"], "newest first");
    assert_eq!(list[0]["commit"], sha(1), "the real deploy is the newest");
    let table = run(&sb, &["history", "-e", "staging"]);
    table.expect(0);
    assert!(
        table.stdout.contains("20200101_000001  deploy    7777777  failure"),
        "{}",
        table.stdout
    );

    let s = run(&sb, &["stats", "-e", "staging", "--since", "30d", "--json"]);
    s.expect(0);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).expect("stats --json");
    assert_eq!(v["deploys"], 3, "{v}");
    assert_eq!(v["failed_deploys"], 1);
    assert!((v["change_failure_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(v["time_to_restore"]["count"], 1);
    assert_eq!(v["time_to_restore"]["median_seconds"], 1800.0);
    assert!(v["lead_time_note"].as_str().unwrap().contains("GitHub token"));
    let summary = sb.root.join("step-summary.md");
    let text = Run::of(
        sb.cmd(&["stats", "-e", "staging"])
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .expect("run tj-deploy"),
    );
    text.expect(0);
    let table = std::fs::read_to_string(&summary).expect("the job summary is written");
    assert!(table.contains("| Measure | Value | From | Median | p90 |"), "{table}");
    assert!(table.contains("| Change failure rate | 33.3 % |"), "{table}");

    // With a token, lead time: each deploy's commits from GitHub's compare (the fake answers
    // with the spec's example commit, dated 2011-04-14T16:00:49Z), to the deploy's end.
    let g = support::github::github();
    g.setup(
        "o/lead",
        serde_json::json!({"branches": {"main": [sha(9), sha(8), sha(1)]}}),
    );
    let lead = Run::of(
        sb.cmd(&["stats", "-e", "staging", "--json"])
            .env("GITHUB_TOKEN", "t")
            .env("GITHUB_REPOSITORY", "o/lead")
            .env("GITHUB_API_URL", g.api_url())
            .output()
            .expect("run tj-deploy"),
    );
    lead.expect(0);
    let v: serde_json::Value = serde_json::from_str(&lead.stdout).expect("stats --json");
    assert_eq!(
        v["lead_time"]["count"], 2,
        "one commit per deploy: {v}\n{}",
        lead.stderr
    );
    let commit_time = chrono::DateTime::parse_from_rfc3339("2011-04-14T16:00:49Z").unwrap();
    let newest = (chrono::Utc::now() - commit_time.with_timezone(&chrono::Utc)).num_seconds();
    let p90 = v["lead_time"]["p90_seconds"].as_i64().unwrap();
    assert!((newest - 300..=newest).contains(&p90), "p90 {p90}, about {newest}");
    assert!(g.violations("o/lead").is_empty(), "{:?}", g.violations("o/lead"));
    assert!(
        text.stdout.contains("| Change failure rate | 33.3 % | 1 of 3 deploys"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("| Time to restore | 30m 00s |"), "{}", text.stdout);
}

/// `status` shows the live release with who deployed it, the workers and their release; a
/// worker left in an old release (here: `current` switched back by hand, no reload) is flagged.
#[test]
fn status_flags_a_worker_left_in_an_old_release() {
    let sb = Sandbox::new("stat");
    sb.deploy(&sha(1)).expect(0);
    sb.set_app("2.0.0", false);
    sb.deploy(&sha(2)).expect(0);
    let releases = sb.releases();
    let (r1, r2) = (&releases[0], &releases[1]);

    let s = run(&sb, &["status", "-e", "staging", "--json"]);
    s.expect(0);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).expect("status --json");
    let h = &v[0];
    assert_eq!(h["release"], r2.as_str(), "{h}");
    assert_eq!(h["commit"], sha(2));
    assert_eq!(h["deployed_kind"], "deploy");
    assert!(h["deployed_by"].as_str().is_some_and(|a| !a.is_empty()), "{h}");
    assert_eq!(h["health"]["http_status"], 200);
    assert_eq!(h["health"]["revision"], sha(2));
    assert_eq!((h["releases"].as_u64(), h["backups"].as_u64()), (Some(2), Some(2)));
    assert!(h["lock"].is_null());
    assert!(h["disk_used_percent"].as_u64().is_some());
    let workers = h["workers"].as_array().expect("workers");
    assert!(!workers.is_empty(), "{h}");
    for w in workers {
        assert_eq!(w["release"], r2.as_str(), "{w}");
        assert_eq!(w["stale"], false);
        assert_eq!(w["status"], "online");
    }

    // The workers keep running v2 while current says v1: every one of them is flagged.
    sh_ok(&format!(
        "cd {} && ln -sfn releases/{r1} current.tmp && mv -T current.tmp current",
        sb.deploy_dir.display()
    ));
    let s = run(&sb, &["status", "-e", "staging"]);
    s.expect(0);
    assert!(
        s.stdout.contains(&format!("live:     releases/{r1}, commit 1111111")),
        "{}",
        s.stdout
    );
    let flagged = s
        .stdout
        .lines()
        .filter(|l| l.contains(&format!("in releases/{r2}, drain ")) && l.contains("⚠ OLD RELEASE"))
        .count();
    assert_eq!(flagged, workers.len(), "{}", s.stdout);
}

/// `restart` under 8 clients without keep-alive: locked, reloaded, verified, logged; no request
/// fails. `--dry-run` changes nothing; `--hard` restarts (new PIDs) and is logged too.
#[test]
fn restart_under_load_fails_no_request_and_is_logged() {
    use std::process::{Command, Stdio};
    let sb = Sandbox::new("rst");
    sb.deploy(&sha(1)).expect(0);
    let pids = || {
        sh_ok(&format!(
            "ps -o pid= -u {DEPLOY_USER} --sort pid | tr -d ' ' | tr '\\n' ,"
        ))
    };

    let before = sb.snapshot();
    let dry = run(&sb, &["restart", "-e", "staging", "--dry-run"]);
    dry.expect(0);
    assert!(dry.stdout.contains("Dry run: restart staging"), "{}", dry.stdout);
    assert_eq!(sb.snapshot(), before, "a dry run changes nothing");

    let load = Command::new("node")
        .arg(support::repo().join("tests/support/load.js"))
        .arg(format!("http://127.0.0.1:{}/api/health", sb.app_port))
        .args(["8", "8"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let r = run(&sb, &["restart", "-e", "staging"]);
    r.expect(0);
    let out = load.wait_with_output().unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).expect("load.js prints JSON");
    println!("load during restart: {stats}");
    assert!(stats["requests"].as_u64().unwrap() > 200, "load too small: {stats}");
    assert_eq!(stats["failures"], 0, "requests failed during the restart: {stats}");
    assert!(r.stdout.contains("success"), "{}", r.stdout);
    assert!(!sb.lock_exists(), "the lock is released");

    // A held lock refuses the restart (exit 3) and leaves the lock and the log alone.
    let lock = sb.deploy_dir.join(".tj-deploy/lock");
    std::fs::create_dir(&lock).unwrap();
    std::fs::write(
        lock.join("owner.json"),
        r#"{"actor":"alice","command":"deploy","environment":"staging","sha":null,"run_url":null,"started_at":"2026-11-27T10:00:00Z","token":"1-2-alice"}"#,
    )
    .unwrap();
    sh_ok(&format!("chown -R deploy: {}", lock.display()));
    let refused = run(&sb, &["restart", "-e", "staging"]);
    refused.expect(3);
    assert!(refused.all().contains("alice"), "{}", refused.all());
    assert!(lock.join("owner.json").exists(), "someone else's lock stays");
    std::fs::remove_dir_all(&lock).unwrap();

    let pids_before = pids();
    run(&sb, &["restart", "-e", "staging", "--hard"]).expect(0);
    assert_ne!(pids(), pids_before, "a hard restart starts new processes");
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));

    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    let restarts: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "restart")
        .collect();
    assert_eq!(restarts.len(), 2, "{log}");
    assert_eq!(restarts[0]["status"], "success");
    assert_eq!(restarts[0]["hard"], false);
    assert_eq!(restarts[1]["hard"], true);
    assert_eq!(restarts[0]["commit"], sha(1));
    let h = run(&sb, &["history", "-e", "staging", "--json"]);
    let kinds: Vec<String> = serde_json::from_str::<serde_json::Value>(&h.stdout).unwrap()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["restart", "restart", "deploy"], "restarts are listed");
}

/// The PIDs of the sandbox's PM2 workers and whether each one was forked with the drain
/// preloaded: PM2 forks a cluster worker with `execArgv` = the app's `node_args` and hands it
/// that very config as `pm2_env` in its environment, so `/proc/<pid>/environ` says what this
/// process started with (its command line is renamed by PM2). `status --json` must agree.
fn worker_drains(sb: &Sandbox) -> Vec<(i64, bool, Vec<String>)> {
    let s = run(sb, &["status", "-e", "staging", "--json"]);
    s.expect(0);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).expect("status --json");
    let workers = v[0]["workers"].as_array().expect("workers").clone();
    assert!(!workers.is_empty(), "{v}");
    let drain = format!("{}/.tj-deploy/drain.js", sb.deploy_dir.display());
    workers
        .iter()
        .map(|w| {
            let pid = w["pid"].as_i64().expect("pid");
            let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the worker runs");
            let forked: serde_json::Value = environ
                .split(|b| *b == 0)
                .find_map(|f| f.strip_prefix(b"pm2_env="))
                .and_then(|j| serde_json::from_slice(j).ok())
                .unwrap_or_else(|| panic!("no pm2_env in /proc/{pid}/environ"));
            let args: Vec<String> = forked["node_args"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let on = args.windows(2).any(|p| p[0] == "--require" && p[1] == drain);
            assert_eq!(w["drain"], on, "status and /proc/{pid}/environ disagree: {w} {args:?}");
            (pid, on, args)
        })
        .collect()
}

/// `restart --hard` goes through the drain's wrapper like a reload: every new worker preloads
/// the drain. The app sets `node_args` of its own (as many do, e.g. a heap size): a plain
/// `pm2 restart ecosystem.config.js --update-env` replaced the wrapper's node_args with the
/// app's, leaving every worker undrained until the next deploy.
#[test]
fn restart_hard_keeps_the_drain_in_every_worker() {
    let sb = Sandbox::new("hard");
    let eco = sb.build_dir.join("ecosystem.config.js");
    let text = std::fs::read_to_string(&eco).unwrap().replace(
        "exec_mode: 'cluster',",
        "exec_mode: 'cluster',\n      node_args: '--max-old-space-size=256',",
    );
    std::fs::write(&eco, text).unwrap();
    sb.deploy(&sha(1)).expect(0);
    let before = worker_drains(&sb);
    assert!(before.iter().all(|w| w.1), "the deploy wires the drain in: {before:?}");
    let r = run(&sb, &["restart", "-e", "staging", "--hard"]);
    r.expect(0);
    let after = worker_drains(&sb);
    assert!(
        after.iter().all(|w| before.iter().all(|old| old.0 != w.0)),
        "a hard restart starts new processes: {before:?} → {after:?}"
    );
    for (pid, on, args) in &after {
        assert!(
            on,
            "worker {pid} runs without the drain after restart --hard: {args:?}\n{}",
            r.all()
        );
        assert_eq!(
            args[0], "--max-old-space-size=256",
            "the app's own node_args come first"
        );
    }
    assert!(r.stdout.contains("success"), "{}", r.stdout);
}

/// A `reload` that names no ecosystem file cannot get the drain to PM2's cluster workers (only
/// NODE_OPTIONS is left, which they ignore): the deploy says so in its summary, naming the
/// command and the fix, `setup --check` shows it as a WARN, `check` and `rollback` as a warning.
/// Named again, it goes.
#[test]
fn a_reload_without_an_ecosystem_file_warns_that_the_drain_cannot_reach_the_workers() {
    let sb = Sandbox::new("fallb");
    sb.deploy(&sha(1)).expect(0);
    sb.write_config("reload = \"pm2 reload all --update-env\"");
    sb.set_app("2.0.0", false);
    let summary = sb.root.join("step-summary.md");
    let d = Run::of(
        sb.cmd(&["deploy", "-e", "staging", "--sha", &sha(2)])
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .expect("run tj-deploy"),
    );
    d.expect(0);
    let fix = tj_deploy::drain::FIX;
    let said = "drain: `reload` (pm2 reload all --update-env) names no ecosystem file";
    assert!(d.stdout.contains(said) && d.stdout.contains(fix), "{}", d.all());
    assert!(
        d.stdout.contains("NODE_OPTIONS, which PM2 cluster workers ignore"),
        "{}",
        d.stdout
    );
    let md = std::fs::read_to_string(&summary).expect("the job summary is written");
    assert!(md.contains(said) && md.contains(fix), "{md}");

    let c = run(&sb, &["setup", "-e", "staging", "--check"]);
    let line = c
        .stdout
        .lines()
        .position(|l| l.contains("WARN  drain: `reload` (pm2 reload all --update-env) names no ecosystem file"))
        .unwrap_or_else(|| panic!("no WARN for the drain:\n{}", c.all()));
    assert!(
        c.stdout
            .lines()
            .nth(line + 1)
            .is_some_and(|l| l.trim() == format!("fix: {fix}")),
        "{}",
        c.stdout
    );

    let c = Run::of(
        sb.cmd(&["check", "-e", "staging", "--sha", &sha(2)])
            .output()
            .expect("run tj-deploy"),
    );
    c.expect(0);
    assert!(
        c.all().contains(said) && c.all().contains(fix),
        "check says it too:\n{}",
        c.all()
    );

    let r = run(&sb, &["rollback", "-e", "staging"]);
    r.expect(0);
    assert!(
        r.stdout.contains(said) && r.stdout.contains(fix),
        "the rollback's summary says it too:\n{}",
        r.all()
    );

    sb.write_config("");
    sb.set_app("3.0.0", false);
    let d = sb.deploy(&sha(3));
    d.expect(0);
    assert!(!d.all().contains("names no ecosystem file"), "{}", d.all());
}

/// `logs` on two hosts whose PM2 writes timestamps (`time: true`): every line prefixed with its
/// host, both hosts present, merged in time order; `--grep` filters; `--follow` streams a line
/// written after it started, until it is stopped.
#[test]
fn logs_from_two_hosts_merge_in_time_order_and_follow() {
    let f = support::fleet::Fleet::new("logs", 2);
    let eco = f.build_dir.join("ecosystem.config.js");
    let text = std::fs::read_to_string(&eco)
        .unwrap()
        .replace("exec_mode: 'cluster',", "exec_mode: 'cluster',\n      time: true,");
    std::fs::write(&eco, text).unwrap();
    f.deploy(&sha(1)).expect(0);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // A second deploy a moment later: both hosts log again, interleaving their times.
    f.deploy(&sha(2)).expect(0);

    let r = f.run(&["logs", "-e", "staging", "--lines", "20"]);
    r.expect(0);
    let hosts: Vec<String> = f.hosts.iter().map(|h| h.spec()).collect();
    let mut times = Vec::new();
    for line in r.stdout.lines() {
        let (host, rest) = line
            .split_once(" │ ")
            .unwrap_or_else(|| panic!("no host prefix: {line}\n{}", r.stdout));
        assert!(hosts.iter().any(|h| h == host), "{line}");
        let msg = rest.split_once(" | ").map_or(rest, |(_, m)| m);
        times.push(msg[..19].to_string());
    }
    for h in &hosts {
        assert!(
            r.stdout.lines().any(|l| l.starts_with(&format!("{h} │ "))),
            "{h} missing:\n{}",
            r.stdout
        );
    }
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "merged in time order:\n{}", r.stdout);
    assert!(r.stdout.contains("listening"), "{}", r.stdout);

    let g = f.run(&["logs", "-e", "staging", "--grep", "2222222222"]);
    g.expect(0);
    assert!(
        !g.stdout.is_empty() && g.stdout.lines().all(|l| l.contains("2222222222")),
        "{}",
        g.stdout
    );

    // --follow, bounded: what the workers log during a restart (PM2 streams from its bus, not
    // from the files) shows up prefixed with each host, then SIGTERM ends it.
    let child = f
        .cmd(&["logs", "-e", "staging", "--follow", "--grep", "listening"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    f.run(&["restart", "-e", "staging"]).expect(0);
    std::thread::sleep(std::time::Duration::from_secs(2));
    sh_ok(&format!("kill -TERM {}", child.id()));
    let out = child.wait_with_output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for h in &hosts {
        assert!(
            all.contains(&format!("{h} │ ")) && all.contains("listening"),
            "{h} not followed:\n{all}"
        );
    }
    assert!(!all.contains("draining"), "--grep applies while following:\n{all}");
}

/// One of two hosts down (its sshd stopped): `status` shows the reachable host in full and the
/// other as unreachable with the SSH error, text and `--json`, and exits 1; `history` and
/// `logs` show what the reachable host has, name the other, and exit 1 too.
#[test]
fn read_commands_show_the_reachable_hosts_when_one_is_down() {
    let mut f = support::fleet::Fleet::new("down", 2);
    f.deploy(&sha(1)).expect(0);
    let (up, down) = (f.hosts[0].spec(), f.hosts[1].spec());
    f.hosts[1].stop_sshd();

    let s = f.run(&["status", "-e", "staging", "--json"]);
    s.expect(1);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).expect("status --json");
    let hosts = v.as_array().expect("one entry per host");
    assert_eq!(hosts.len(), 2, "{v}");
    assert_eq!(hosts[0]["host"], up.as_str());
    assert_eq!(hosts[0]["commit"], sha(1), "the reachable host in full: {v}");
    assert_eq!(hosts[0]["health"]["http_status"], 200, "{v}");
    assert!(!hosts[0]["workers"].as_array().unwrap().is_empty(), "{v}");
    assert!(hosts[0]["unreachable"].is_null());
    assert_eq!(hosts[1]["host"], down.as_str());
    let why = hosts[1]["unreachable"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(!why.is_empty() && hosts[1]["release"].is_null(), "{v}");
    for unknown in ["releases", "backups", "workers", "health"] {
        assert!(hosts[1][unknown].is_null(), "not known, so not 0 or []: {v}");
    }
    assert!(
        s.stderr.contains(&down) && s.stderr.contains("1 of 2 host(s) not read"),
        "{}",
        s.stderr
    );
    assert!(
        !s.stderr.contains(&format!("{down} (connect {down}")),
        "the host named once: {}",
        s.stderr
    );

    let t = f.run(&["status", "-e", "staging"]);
    t.expect(1);
    assert!(
        t.stdout.contains(&format!("{up}\n  live:     releases/")),
        "{}",
        t.stdout
    );
    assert!(
        t.stdout.contains(&format!("{down}\n  UNREACHABLE: {why}")),
        "the same SSH error:\n{}",
        t.stdout
    );

    let h = f.run(&["history", "-e", "staging", "--json"]);
    h.expect(1);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).expect("history --json");
    assert_eq!(v["runs"][0]["commit"], sha(1), "the reachable host's log: {v}");
    assert_eq!(v["hosts_not_read"], serde_json::json!([down]), "{v}");
    assert!(h.stderr.contains(&down), "{}", h.stderr);

    let summary = f.root.join("step-summary.md");
    let st = support::Run::of(
        f.cmd(&["stats", "-e", "staging", "--json"])
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .expect("run tj-deploy"),
    );
    st.expect(1);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).expect("stats --json");
    assert_eq!(v["deploys"], 1, "the reachable host's log: {v}");
    assert_eq!(v["hosts_not_read"], serde_json::json!([down]), "{v}");
    let md = std::fs::read_to_string(&summary).expect("the job summary is written");
    assert!(
        md.contains(&format!("> ⚠ {down} not read (`"))
            && md.contains("`): these figures come from the other hosts' logs."),
        "{md}"
    );

    let l = f.run(&["logs", "-e", "staging", "--lines", "5"]);
    l.expect(1);
    assert!(l.stdout.contains(&format!("{up} │ ")), "{}", l.all());
    assert!(!l.stdout.contains(&format!("{down} │ ")), "{}", l.all());
    assert!(l.stderr.contains(&down), "{}", l.stderr);
    assert!(
        !l.stderr
            .contains(&format!("{down}: no logs from this host: connect {down}")),
        "the host named once: {}",
        l.stderr
    );

    // Every host down: nothing was read, so no (empty) figures, only the error.
    f.hosts[0].stop_sshd();
    for cmd in ["history", "stats"] {
        let r = f.run(&[cmd, "-e", "staging"]);
        r.expect(1);
        assert_eq!(
            r.stdout.trim(),
            "",
            "{cmd} prints nothing it did not read:\n{}",
            r.all()
        );
        assert!(r.stderr.contains("2 of 2 host(s) not read"), "{}", r.stderr);
    }
}

fn fresh_config(sb: &Sandbox, deploy: &std::path::Path, backup: &std::path::Path) {
    let text = support::config_text(
        &sb.build_dir,
        &[sb.sshd.host()],
        deploy,
        backup,
        &format!("http://127.0.0.1:{}/api/health", sb.app_port),
        "",
    );
    std::fs::write(&sb.config, text).unwrap();
}

/// `setup` on an empty host creates the layout (backup_dir private), FAILs the missing linked
/// file with the command that fixes it (never creating it); once it is there `--check` passes
/// and a deploy succeeds. Then each FAIL: an unwritable backup_dir readable by others, a wrong
/// Node major, a pg_dump older than the server (a wrapper) — and `--check` changes nothing.
#[test]
fn setup_creates_the_layout_checks_and_names_each_fix() {
    let sb = Sandbox::new("setup");
    let deploy = sb.root.join("srv/fresh");
    let backup = sb.root.join("backups/fresh");
    fresh_config(&sb, &deploy, &backup);

    let r = run(&sb, &["setup", "-e", "staging"]);
    r.expect(1);
    for d in ["releases", "shared", ".tj-deploy"] {
        assert!(deploy.join(d).is_dir(), "{d} created\n{}", r.stdout);
    }
    assert_eq!(
        sh_ok(&format!("stat -c '%a %U' {}", backup.display())).trim(),
        "700 deploy"
    );
    let env = deploy.join("shared/.env");
    assert!(!env.exists(), "a linked file is never created");
    assert!(
        r.stdout
            .contains(&format!("FAIL  linked file: {} is missing", env.display())),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(&format!("fix: scp .env {}:{}", sb.sshd.host(), env.display())),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("PASS  database: SELECT 1 answered") || r.stdout.contains("FAIL  database"),
        "{}",
        r.stdout
    );

    std::fs::copy(sb.deploy_dir.join("shared/.env"), &env).unwrap();
    sh_ok(&format!("chmod 600 {e} && chown deploy: {e}", e = env.display()));
    let ok = run(&sb, &["setup", "-e", "staging", "--check"]);
    ok.expect(0);
    for line in [
        "PASS  deploy_dir",
        "PASS  backup_dir",
        "PASS  linked file",
        "PASS  database: SELECT 1 answered",
        "PASS  node",
        "PASS  pm2",
        "PASS  pg_dump",
        "PASS  disk",
    ] {
        assert!(ok.stdout.contains(line), "{line}\n{}", ok.stdout);
    }
    sb.deploy(&sha(1)).expect(0);

    // Every FAIL at once.
    sh_ok(&format!("chmod 755 {b} && chown root: {b}", b = backup.display()));
    let pkg = sb.build_dir.join("package.json");
    let text = std::fs::read_to_string(&pkg).unwrap().replace("\">=18\"", "\">=99\"");
    std::fs::write(&pkg, text).unwrap();
    let hostbin = sb.root.join("hostbin");
    std::fs::create_dir_all(&hostbin).unwrap();
    std::fs::write(hostbin.join("pg_dump"), "#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.0'\n").unwrap();
    sh_ok(&format!("chmod 755 {0} {0}/pg_dump", hostbin.display()));
    let before = sb.snapshot();
    let bad = run(&sb, &["setup", "-e", "staging", "--check"]);
    bad.expect(1);
    assert_eq!(sb.snapshot(), before, "--check changes nothing");
    let b = backup.display();
    for (line, fix) in [
        (
            format!("FAIL  backup_dir: {b} is not writable by deploy"),
            format!("fix: sudo mkdir -p {b} && sudo chown deploy: {b}"),
        ),
        (
            format!("FAIL  backup_dir mode: {b} is 755"),
            format!("fix: chmod 700 {b}"),
        ),
        ("FAIL  node: node v20".to_string(), "nvm install 99".to_string()),
        (
            "FAIL  pm2 daemon node: the PM2 daemon runs node v20".to_string(),
            "fix: pm2 update".to_string(),
        ),
        (
            "FAIL  pg_dump: pg_dump 12 is older than the server (15)".to_string(),
            "fix: apt-get install postgresql-client-15".to_string(),
        ),
    ] {
        assert!(bad.stdout.contains(&line), "{line}\n{}", bad.stdout);
        assert!(bad.stdout.contains(&fix), "{fix}\n{}", bad.stdout);
    }
    assert!(
        bad.stderr.contains("4 check(s) FAIL") || bad.stderr.contains("check(s) FAIL"),
        "{}",
        bad.stderr
    );
    sh_ok(&format!("chown -R deploy: {}", backup.display()));
}
