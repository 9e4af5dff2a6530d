//! `setup --adopt` (issue #16) on the real sshd and PM2 of tests/support: a runbook-style host
//! (the sample app unpacked in deploy_dir, `pm2 start ecosystem.config.js` run there) is
//! adopted under load without a failed request, then deployed to and rolled back like any
//! host; refusals and the dry run change nothing.

mod support;

use std::time::Duration;

use support::{DEPLOY_USER, Run, Sandbox, load, load_stats, sh_ok, sha};

fn run(sb: &Sandbox, args: &[&str]) -> Run {
    Run::of(sb.cmd(args).output().expect("run tj-deploy"))
}

/// `pm2 <args>` as the deploy user with the sandbox's PM2_HOME, run in `dir`.
fn pm2(sb: &Sandbox, dir: &std::path::Path, args: &str) -> String {
    let pm2 = support::pm2_bin();
    let tools = pm2.parent().unwrap().display().to_string();
    sh_ok(&format!(
        "cd {dir} && runuser -u {DEPLOY_USER} -- env HOME={home} PM2_HOME={home} PATH={tools}:/usr/bin:/bin TJ_APP_NAME={name} TJ_CURRENT={dir} {pm2} {args}",
        dir = dir.display(),
        home = sb.pm2_home.display(),
        name = sb.app_name,
        pm2 = pm2.display(),
    ))
}

/// The runbook's way: the app unpacked in deploy_dir with its `.env` and node_modules, started
/// from there (`cwd` = deploy_dir) in cluster mode. Returns the inode of a node_modules file.
fn runbook_host(sb: &Sandbox) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let d = sb.deploy_dir.display();
    sh_ok(&format!(
        "cd {d} && mv shared/.env .env && rmdir shared && cp -r {b}/. . && mkdir -p node_modules/dep && echo 'module.exports = 1;' > node_modules/dep/index.js && chown -R {DEPLOY_USER}: .",
        b = sb.build_dir.display()
    ));
    pm2(sb, &sb.deploy_dir, "start ecosystem.config.js");
    for _ in 0..100 {
        if sb.health().is_some_and(|(s, _)| s == 200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sb.health().map(|(s, _)| s), Some(200), "the runbook app serves");
    std::fs::metadata(sb.deploy_dir.join("node_modules/dep/index.js"))
        .unwrap()
        .ino()
}

/// (name, pid, /proc/<pid>/cwd) of every PM2 process.
fn workers(sb: &Sandbox) -> Vec<(String, u64, String)> {
    let out = pm2(sb, &sb.root, "jlist");
    let line = out.lines().rfind(|l| l.starts_with('[')).expect("pm2 jlist");
    let list: serde_json::Value = serde_json::from_str(line).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let pid = p["pid"].as_u64().unwrap_or(0);
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
                .map(|c| c.display().to_string())
                .unwrap_or_default();
            (p["name"].as_str().unwrap_or("").to_string(), pid, cwd)
        })
        .collect()
}

/// Nothing to adopt (exit 3, untouched); the dry run prints the plan and changes nothing;
/// under 8 clients without keep-alive the adoption fails no request and every worker ends up
/// in the new release (node_modules hard-linked, `.env` moved into shared/); a second adoption
/// is refused byte-identically; then a deploy and `rollback --to latest` work as on any host.
#[test]
fn a_runbook_host_is_adopted_under_load_then_deployed_and_rolled_back() {
    let sb = Sandbox::new("adopt");
    let before = sb.snapshot();
    let none = run(&sb, &["setup", "-e", "staging", "--adopt"]);
    none.expect(3);
    assert!(none.all().contains("nothing to adopt"), "{}", none.all());
    assert_eq!(sb.snapshot(), before, "a refusal changes nothing");

    let inode = runbook_host(&sb);
    let old_pids: Vec<u64> = workers(&sb).iter().map(|w| w.1).collect();
    assert_eq!(old_pids.len(), 2, "two cluster workers");
    let before = sb.snapshot();
    let dry = run(&sb, &["setup", "-e", "staging", "--adopt", "--dry-run"]);
    dry.expect(0);
    assert!(dry.stdout.contains("Dry run: setup --adopt staging"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains("-tj-adopt") && dry.stdout.contains("2 old process"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("entries moved into the release") && dry.stdout.contains("node_modules"),
        "the dry run lists what it moves: {}",
        dry.stdout
    );
    assert_eq!(sb.snapshot(), before, "a dry run changes nothing");

    let l = load(&sb);
    let r = run(&sb, &["setup", "-e", "staging", "--adopt"]);
    let stats = load_stats(l);
    println!("load during adopt: {stats}\n{}", r.all());
    r.expect(0);
    assert!(stats["requests"].as_u64().unwrap() > 100, "load too small: {stats}");
    assert_eq!(stats["failures"], 0, "requests failed during the adoption: {stats}");

    let releases = sb.releases();
    assert_eq!(releases.len(), 1, "{releases:?}");
    let rel = &releases[0];
    assert_eq!(sb.current().as_deref(), Some(format!("releases/{rel}").as_str()));
    let release_dir = sb.deploy_dir.join("releases").join(rel);
    let w = workers(&sb);
    assert_eq!(w.len(), 2, "only the app's own workers are left: {w:?}");
    for (name, pid, cwd) in &w {
        assert_eq!(name, &sb.app_name);
        assert!(!old_pids.contains(pid), "the old workers are gone");
        assert_eq!(
            cwd,
            &release_dir.display().to_string(),
            "pid {pid} runs in the new release"
        );
    }
    {
        use std::os::unix::fs::MetadataExt;
        let moved = std::fs::metadata(release_dir.join("node_modules/dep/index.js")).unwrap();
        assert_eq!(moved.ino(), inode, "node_modules moved, not copied");
    }
    assert!(sb.deploy_dir.join("shared/.env").is_file());
    assert_eq!(
        std::fs::read_link(release_dir.join(".env")).unwrap(),
        sb.deploy_dir.join("shared/.env")
    );
    for gone in ["server.js", "package.json", ".env", "node_modules"] {
        assert!(!sb.deploy_dir.join(gone).exists(), "{gone} left in deploy_dir");
    }
    let kept = std::fs::read_dir(sb.deploy_dir.join(".tj-deploy"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("adopted-"));
    assert_eq!(kept, r.all().contains("written during the handover"), "{}", r.all());
    assert_eq!(
        std::fs::read_to_string(release_dir.join("REVISION")).unwrap().trim(),
        "adopted"
    );
    assert_eq!(sb.revision().as_deref(), Some("adopted"));
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["status"].as_str()),
        (Some("adopt"), Some("success")),
        "{log}"
    );
    assert!(!sb.lock_exists());
    let dump = std::fs::read_to_string(sb.pm2_home.join("dump.pm2")).expect("pm2 save ran");
    assert!(dump.contains(&format!("{}/current", sb.deploy_dir.display())), "{dump}");
    let status = run(&sb, &["status", "-e", "staging", "--json"]);
    status.expect(0);
    assert!(status.stdout.contains(rel.as_str()), "{}", status.stdout);

    let before = sb.snapshot();
    let again = run(&sb, &["setup", "-e", "staging", "--adopt"]);
    again.expect(3);
    assert!(again.all().contains("already exists"), "{}", again.all());
    assert_eq!(sb.snapshot(), before, "a refused adoption changes nothing");

    sb.deploy(&sha(1)).expect(0);
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));
    let back = run(&sb, &["rollback", "-e", "staging", "--to", "latest"]);
    back.expect(0);
    assert_eq!(sb.current().as_deref(), Some(format!("releases/{rel}").as_str()));
    assert_eq!(sb.revision().as_deref(), Some("adopted"));
}

/// The handover fails after the old processes were deleted (a `pm2` wrapper refuses to start
/// the app's own names from `current`): the old app is started again from deploy_dir, the
/// temporary copy is deleted, releases/, current and shared/ are gone, no request fails, the
/// run exits 1 and logs a failed `adopt`. Without the wrapper a second adoption succeeds.
#[test]
fn a_failed_handover_puts_the_runbook_host_back() {
    let sb = Sandbox::new("adoptfail");
    runbook_host(&sb);
    let hostbin = sb.root.join("hostbin");
    std::fs::create_dir_all(&hostbin).unwrap();
    std::fs::write(
        hostbin.join("pm2"),
        format!(
            "#!/bin/sh\nif [ \"$1\" = start ] && [ -n \"${{TJ_ADOPT_BASE:-}}\" ] && [ -z \"${{TJ_ADOPT_SUFFIX:-}}\" ]; then echo 'simulated: pm2 start failed' >&2; exit 1; fi\nexec {} \"$@\"\n",
            support::pm2_bin().display()
        ),
    )
    .unwrap();
    sh_ok(&format!("chmod 755 {0} {0}/pm2", hostbin.display()));

    let l = load(&sb);
    let r = run(&sb, &["setup", "-e", "staging", "--adopt"]);
    let stats = load_stats(l);
    println!("load during the failed adoption: {stats}\n{}", r.all());
    r.expect(1);
    assert_eq!(stats["failures"], 0, "requests failed while putting back: {stats}");
    assert!(r.all().contains("simulated: pm2 start failed"), "{}", r.all());
    assert!(r.all().contains("put back as it was"), "{}", r.all());
    for gone in ["releases", "current", "shared"] {
        assert!(!sb.deploy_dir.join(gone).exists(), "{gone} is removed");
    }
    for kept in ["server.js", ".env", "node_modules/dep/index.js"] {
        assert!(sb.deploy_dir.join(kept).exists(), "{kept} is back in deploy_dir");
    }
    let w = workers(&sb);
    assert_eq!(w.len(), 2, "{w:?}");
    for (name, pid, cwd) in &w {
        assert_eq!(name, &sb.app_name, "the temporary copy is deleted");
        assert_eq!(
            cwd,
            &sb.deploy_dir.display().to_string(),
            "pid {pid} serves from deploy_dir"
        );
    }
    assert_eq!(sb.health().map(|(s, _)| s), Some(200));
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    assert!(
        log.contains("\"kind\":\"adopt\"") && log.contains("\"status\":\"failure\""),
        "{log}"
    );
    assert!(!sb.lock_exists());

    std::fs::remove_file(hostbin.join("pm2")).unwrap();
    run(&sb, &["setup", "-e", "staging", "--adopt"]).expect(0);
    assert_eq!(sb.releases().len(), 1);
}

/// `setup --check` with one host unreachable: that host gets FAIL "ssh login" with the fix,
/// the other is still checked (its HTTP client for health_from = "host" named, the Node checks
/// in order: node, pm2, the PM2 daemon's node), exit 1.
#[test]
fn setup_check_reports_an_unreachable_host_and_checks_the_others() {
    let sb = Sandbox::new("setupdown");
    sb.deploy(&sha(1)).expect(0);
    let down = format!("{DEPLOY_USER}@127.0.0.1:{}", support::free_port());
    let text = support::config_text(
        &sb.build_dir,
        &[sb.sshd.host(), down.clone()],
        &sb.deploy_dir,
        &sb.backup_dir,
        &format!("http://127.0.0.1:{}/api/health", sb.app_port),
        "health_from = \"host\"",
    );
    std::fs::write(&sb.config, text).unwrap();
    let r = run(&sb, &["setup", "-e", "staging", "--check"]);
    println!("{}", r.all());
    r.expect(1);
    let out = &r.stdout;
    let port = down.rsplit(':').next().unwrap();
    assert!(out.contains(&format!("{down}\n  FAIL  ssh login: ")), "{out}");
    assert!(
        out.contains(&format!(
            "fix: check `ssh -p {port} {DEPLOY_USER}@127.0.0.1 true` works"
        )),
        "{out}"
    );
    let up = out.split(&format!("{down}\n")).next().unwrap();
    assert!(up.contains("PASS  ssh login: connected"), "{out}");
    assert!(up.contains("PASS  deploy_dir"), "the reachable host is checked: {out}");
    assert!(
        up.contains("PASS  http client: curl (health_from = \"host\" probes with it)"),
        "{out}"
    );
    let at = |s: &str| up.find(s).unwrap_or_else(|| panic!("{s} missing:\n{out}"));
    assert!(at("  node: ") < at("  pm2: "), "{out}");
    assert!(at("  pm2: ") < at("  pm2 daemon node: "), "{out}");
    assert!(up.contains("(the app asks for >=18"), "{out}");
}

/// The runbook's own ecosystem file (`script: 'npm'` in cluster mode: npm is the worker, the
/// server its child, which PM2 cannot hand over): no temporary copy; the old processes go, the
/// app starts from `current`, is verified (on the host: health_from = "host"), and the summary
/// carries the availability figure (probed on the host) and the lint's fix instead of promising
/// zero.
#[test]
fn a_runbook_npm_app_is_adopted_with_the_gap_reported() {
    let sb = Sandbox::new("adoptnpm");
    // Verification and the availability probes from the host itself this time.
    sb.write_config("health_from = \"host\"");
    runbook_host(&sb);
    pm2(&sb, &sb.root, "delete all");
    std::fs::write(
        sb.deploy_dir.join("ecosystem.config.js"),
        "module.exports = { apps: [{ name: process.env.TJ_APP_NAME, script: 'npm', args: 'start', cwd: process.env.TJ_CURRENT, exec_mode: 'cluster', instances: 2 }] };\n",
    )
    .unwrap();
    pm2(&sb, &sb.deploy_dir, "start ecosystem.config.js");
    for _ in 0..100 {
        if sb.health().is_some_and(|(s, _)| s == 200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sb.health().map(|(s, _)| s), Some(200), "the npm runbook app serves");
    let dry = run(&sb, &["setup", "-e", "staging", "--adopt", "--dry-run"]);
    dry.expect(0);
    assert!(dry.stdout.contains("no temporary copy"), "{}", dry.stdout);

    let l = load(&sb);
    let r = run(&sb, &["setup", "-e", "staging", "--adopt"]);
    let stats = load_stats(l);
    println!("load during the npm adoption: {stats}\n{}", r.all());
    r.expect(0);
    assert!(
        r.all().contains("script 'npm' in cluster mode"),
        "the lint's fix: {}",
        r.all()
    );
    assert!(r.stdout.contains("availability"), "{}", r.stdout);
    let rel = sb.releases().pop().expect("a release");
    assert_eq!(sb.current().as_deref(), Some(format!("releases/{rel}").as_str()));
    let release_dir = sb.deploy_dir.join("releases").join(&rel).display().to_string();
    // npm's stray children fight over the port and PM2 restarts the losers: a listed pid may be
    // gone already, or a restarting worker may not have left PM2's own directory yet (deploy_dir,
    // where the runbook started PM2): every worker that settled runs in the release.
    let settled = |w: &[(String, u64, String)]| w.iter().all(|(_, _, c)| c.is_empty() || c == &release_dir);
    let mut w = workers(&sb);
    for _ in 0..25 {
        if settled(&w) && w.iter().any(|(_, _, c)| !c.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        w = workers(&sb);
    }
    assert!(settled(&w) && w.iter().any(|(_, _, c)| !c.is_empty()), "{w:?}");
    assert!(w.iter().all(|(name, _, _)| name == &sb.app_name), "{w:?}");
    assert_eq!(sb.health().map(|(s, _)| s), Some(200));
}

/// Finishing fails after the verify (a `pm2` wrapper fails `pm2 save`): exit 1, the app serves
/// the release from `current` and the message says to run `setup --adopt` again; `status`
/// warns about the leftover snapshot; the rerun verifies and finishes (originals gone, scratch
/// files gone, exit 0) instead of refusing.
#[test]
fn a_rerun_finishes_an_interrupted_adoption() {
    let sb = Sandbox::new("adoptresume");
    runbook_host(&sb);
    let hostbin = sb.root.join("hostbin");
    std::fs::create_dir_all(&hostbin).unwrap();
    std::fs::write(
        hostbin.join("pm2"),
        format!(
            "#!/bin/sh\nif [ \"$1\" = save ]; then echo 'simulated: pm2 save failed' >&2; exit 1; fi\nexec {} \"$@\"\n",
            support::pm2_bin().display()
        ),
    )
    .unwrap();
    sh_ok(&format!("chmod 755 {0} {0}/pm2", hostbin.display()));
    let r = run(&sb, &["setup", "-e", "staging", "--adopt"]);
    println!("{}", r.all());
    r.expect(1);
    assert!(r.all().contains("simulated: pm2 save failed"), "{}", r.all());
    assert!(r.all().contains("run `setup --adopt` again to finish"), "{}", r.all());
    let rel = sb.releases().pop().expect("the release stays");
    assert_eq!(sb.current().as_deref(), Some(format!("releases/{rel}").as_str()));
    assert!(
        sb.deploy_dir.join("server.js").exists(),
        "the originals are still there"
    );
    assert!(sb.deploy_dir.join(".tj-deploy/adopt-old.json").exists());
    assert!(
        sb.deploy_dir.join(format!(".tj-deploy/adopting-{rel}")).exists(),
        "the marker proves the adoption"
    );
    assert_eq!(sb.health().map(|(s, _)| s), Some(200));
    let status = run(&sb, &["status", "-e", "staging"]);
    assert!(
        status
            .stdout
            .contains("adopt-old.json is left from an interrupted `setup --adopt`"),
        "{}",
        status.all()
    );

    std::fs::remove_file(hostbin.join("pm2")).unwrap();
    let dry = run(&sb, &["setup", "-e", "staging", "--adopt", "--dry-run"]);
    dry.expect(0);
    assert!(dry.stdout.contains("finish an interrupted adoption"), "{}", dry.stdout);
    let again = run(&sb, &["setup", "-e", "staging", "--adopt"]);
    println!("{}", again.all());
    again.expect(0);
    assert!(
        again.all().contains("finishing an interrupted adoption"),
        "{}",
        again.all()
    );
    assert_eq!(sb.releases(), vec![rel.clone()]);
    assert_eq!(sb.current().as_deref(), Some(format!("releases/{rel}").as_str()));
    for gone in [
        "server.js",
        "package.json",
        "node_modules",
        ".tj-deploy/adopt-old.json",
        ".tj-deploy/adopt-started",
        &format!(".tj-deploy/adopting-{rel}"),
    ] {
        assert!(!sb.deploy_dir.join(gone).exists(), "{gone} left");
    }
    let w = workers(&sb);
    assert!(!w.is_empty() && w.iter().all(|(n, _, _)| n == &sb.app_name), "{w:?}");
    let dump = std::fs::read_to_string(sb.pm2_home.join("dump.pm2")).expect("pm2 save ran");
    assert!(dump.contains(&format!("{}/current", sb.deploy_dir.display())), "{dump}");
    let status = run(&sb, &["status", "-e", "staging"]);
    assert!(!status.stdout.contains("interrupted"), "{}", status.stdout);
}
