//! Issue #7: faults. After each: the previous release still serves, `current` points at a
//! complete release, every backup taken is intact and listed, the lock is released (or, for
//! SIGKILL, reported with its owner and clearable), and the error names the failed step.

mod support;

use std::process::Stdio;

use support::{Run, Sandbox, sha};

/// What must hold after any fault: v1 serves from a complete release, no partial release or
/// backup is left, and every listed backup has its manifest.
fn assert_intact(sb: &Sandbox, current_before: &Option<String>) {
    assert_eq!(&sb.current(), current_before, "current moved");
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()), "v1 must still serve");
    let cur = sb.current().unwrap();
    assert!(
        sb.deploy_dir.join(&cur).join("REVISION").is_file(),
        "current points at a complete release"
    );
    for r in sb.releases() {
        assert!(
            sb.deploy_dir.join("releases").join(&r).join("REVISION").is_file(),
            "partial release {r} left behind"
        );
    }
    for b in sb.backups() {
        assert!(
            sb.backup_dir.join(&b).join("manifest.json").is_file(),
            "backup {b} without manifest"
        );
    }
    let partial = std::fs::read_dir(&sb.backup_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
    assert!(!partial, "a partial backup is left");
}

fn failing_step(sb: &Sandbox, extra: &str, commit: u32) -> Run {
    sb.write_config(extra);
    sb.set_app(&format!("{commit}.0.0"), false);
    let run = sb.deploy(&sha(commit));
    sb.write_config("");
    run
}

#[test]
fn failed_install_migrate_and_reload_leave_v1_serving() {
    let sb = Sandbox::new("steps");
    sb.deploy(&sha(1)).expect(0);
    let before = sb.current();

    let run = failing_step(&sb, "install = \"echo npm ERR! broken >&2; exit 7\"", 2);
    run.expect(1);
    assert!(
        run.error_line().contains("install") && run.error_line().contains("exit 7"),
        "{}",
        run.error_line()
    );
    assert!(run.error_line().contains("removed"), "{}", run.error_line());
    assert_intact(&sb, &before);
    assert!(!sb.lock_exists());

    let run = failing_step(
        &sb,
        "migrate = \"echo 'relation trades does not exist' >&2; exit 3\"",
        3,
    );
    run.expect(1);
    let line = run.error_line();
    let backup = sb.backups().last().unwrap().clone();
    assert!(
        line.contains("migrate") && line.contains(&backup),
        "names the backup to restore from: {line}"
    );
    assert_intact(&sb, &before);

    // The new release's reload fails; the previous release's reload (during rollback) works.
    sb.write_config(
        "reload = \"if [ -f UNHEALTHY ]; then echo 'reload failed' >&2; exit 9; fi; pm2 startOrReload ecosystem.config.js --update-env\"",
    );
    sb.set_app("4.0.0", true);
    let run = sb.deploy(&sha(4));
    sb.write_config("");
    run.expect(1);
    let line = run.error_line();
    assert!(line.contains("reload") && line.contains("serving again"), "{line}");
    assert_intact(&sb, &before);
    assert!(!sb.lock_exists());
    // Each failed attempt is in the log.
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    assert_eq!(log.lines().count(), 4);
}

#[test]
fn database_down_during_backup_stops_everything() {
    let sb = Sandbox::new("pgdown");
    sb.deploy(&sha(1)).expect(0);
    let before = sb.current();
    let backups = sb.backups();
    sb.pg.stop();
    sb.set_app("2.0.0", false);
    let run = sb.deploy(&sha(2));
    sb.pg.restart();
    run.expect(1);
    assert!(
        run.error_line().contains("backup") && run.error_line().contains("pg_dump"),
        "{}",
        run.error_line()
    );
    assert_eq!(sb.backups(), backups, "no new backup");
    assert_eq!(sb.releases().len(), 1, "nothing extracted");
    assert_intact(&sb, &before);
    assert!(!sb.lock_exists());
    // Nothing to clean up by hand: the next deploy goes through.
    sb.deploy(&sha(2)).expect(0);
}

#[test]
fn a_corrupt_package_on_the_host_is_never_extracted() {
    let sb = Sandbox::new("corrupt");
    sb.deploy(&sha(1)).expect(0);
    let before = sb.current();
    // The same tree under another commit name reuses the uploaded package: corrupt it.
    let pkg = std::fs::read_dir(sb.deploy_dir.join(".tj-deploy/packages"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&pkg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&pkg, bytes).unwrap();
    let run = sb.deploy(&sha(5));
    run.expect(1);
    assert!(run.error_line().contains("corrupt"), "{}", run.error_line());
    assert_intact(&sb, &before);
    assert!(!pkg.exists(), "the corrupt package is removed");
    // The next deploy uploads it again.
    let run = sb.deploy(&sha(5));
    run.expect(0);
    assert!(!run.stdout.contains("already on the host"));
}

#[test]
fn two_deploys_at_once_one_proceeds_the_other_is_refused() {
    let sb = Sandbox::new("race");
    sb.deploy(&sha(1)).expect(0);
    sb.set_app("2.0.0", false);
    let spawn = |n: u32| {
        sb.cmd(&["deploy", "-e", "staging", "--sha", &sha(n)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(2), spawn(3));
    let (a, b) = (
        Run::of(a.wait_with_output().unwrap()),
        Run::of(b.wait_with_output().unwrap()),
    );
    let mut codes = [a.code, b.code];
    codes.sort();
    assert_eq!(codes, [0, 3], "a: {}\nb: {}", a.all(), b.all());
    let refused = if a.code == 3 { &a } else { &b };
    assert!(refused.error_line().contains("held by"), "{}", refused.error_line());
    assert!(!sb.lock_exists());
}

#[test]
fn sigkill_leaves_a_lock_that_names_its_owner_and_unlock_clears() {
    let sb = Sandbox::new("kill9");
    sb.deploy(&sha(1)).expect(0);
    let before = sb.current();
    sb.write_config("install = \"sleep 30\"");
    sb.set_app("2.0.0", false);
    let mut child = sb
        .cmd(&["deploy", "-e", "staging", "--sha", &sha(2)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !sb
        .releases()
        .iter()
        .any(|r| !sb.deploy_dir.join("releases").join(r).join("REVISION").exists())
    {
        assert!(std::time::Instant::now() < deadline, "install never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    sb.write_config("");
    assert!(sb.lock_exists(), "SIGKILL cannot release the lock");
    assert_eq!(sb.current(), before);
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));

    let run = sb.deploy(&sha(2));
    run.expect(3);
    assert!(
        run.error_line().contains("held by") && run.error_line().contains("unlock"),
        "{}",
        run.error_line()
    );
    Run::of(sb.cmd(&["unlock", "-e", "staging"]).output().unwrap()).expect(0);
    sb.deploy(&sha(2)).expect(0);
    // The killed run's unfinished release was pruned by the next deploy.
    for r in sb.releases() {
        assert!(
            sb.deploy_dir.join("releases").join(&r).join("REVISION").is_file(),
            "unfinished release {r} left"
        );
    }
    // The sleep the killed run started on the host is no concern of the test; PM2 and sshd stop on drop.
}

/// The connection drops mid-command (sshd and its sessions killed, back after a second):
/// tj-deploy reconnects once to clean up, fails naming the step, and the next deploy goes
/// through without anyone touching the host.
#[test]
fn connection_dropped_mid_command_reconnects_to_clean_up() {
    let mut sb = Sandbox::new("drop");
    sb.deploy(&sha(1)).expect(0);
    let before = sb.current();
    let releases = sb.releases();
    sb.write_config("install = \"echo installing; sleep 20\"");
    sb.set_app("2.0.0", false);
    let run = sb.start_deploy_until(&sha(2), |l| l.contains("installing"));
    sb.sshd.crash_and_restart(std::time::Duration::from_secs(1));
    let (code, rest) = run.finish();
    assert_eq!(code, Some(1), "{rest}");
    assert!(rest.contains("reconnecting once"), "{rest}");
    let error = rest
        .lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("install") && error.contains("disconnected"),
        "{error}\n{rest}"
    );
    assert!(!sb.lock_exists(), "the lock was released after reconnecting");
    assert_eq!(sb.releases(), releases, "the unfinished release was removed:\n{rest}");
    assert_intact(&sb, &before);
    sb.write_config("");
    sb.deploy(&sha(2)).expect(0);
}

/// A Slack that fails after the deploy is a warning; the result stands.
#[test]
fn notification_failure_is_a_warning_not_a_failure() {
    let sb = Sandbox::new("slackdown");
    let closed = support::free_port();
    let run = Run::of(
        sb.cmd(&["deploy", "-e", "staging", "--sha", &sha(1)])
            .env("SLACK_WEBHOOK_URL", format!("http://127.0.0.1:{closed}/services/x"))
            .output()
            .unwrap(),
    );
    run.expect(0);
    assert!(run.all().contains("Slack notification failed"), "{}", run.all());
    assert!(
        !run.all().contains(&format!("{closed}/services")),
        "the webhook URL is not printed"
    );
}

/// The host's disk fills up while extracting (the deploy dir is a 1 MiB tmpfs and the new
/// release unpacks to 3 MiB): no switch, the partial release is removed, v1 still serves.
#[test]
fn disk_full_during_extract_removes_the_partial_release() {
    let sb = Sandbox::new("diskfull");
    let env_file = std::fs::read(sb.deploy_dir.join("shared/.env")).unwrap();
    support::sh_ok(&format!(
        "mount -t tmpfs -o size=1m,mode=0755 tmpfs {}",
        sb.deploy_dir.display()
    ));
    std::fs::create_dir_all(sb.deploy_dir.join("shared")).unwrap();
    std::fs::write(sb.deploy_dir.join("shared/.env"), env_file).unwrap();
    support::sh_ok(&format!("chown -R deploy: {}", sb.deploy_dir.display()));
    sb.deploy(&sha(1)).expect(0);
    let before = sb.current();
    let releases = sb.releases();

    sb.set_app("2.0.0", false);
    // Compresses to a few KiB (the upload fits), unpacks to 3 MiB (the extract does not).
    std::fs::write(sb.build_dir.join("big.bin"), vec![0u8; 3 << 20]).unwrap();
    let run = sb.deploy(&sha(2));
    let outcome = (run.code, run.error_line());
    let after = (sb.current(), sb.releases(), sb.revision(), sb.lock_exists());
    // Lazily: PM2 still has its working directory in there until the sandbox stops it.
    support::sh_ok(&format!("umount -l {}", sb.deploy_dir.display()));
    assert_eq!(outcome.0, 1, "{}", run.all());
    assert!(
        outcome.1.contains("extract") && outcome.1.contains("No space left"),
        "{}",
        outcome.1
    );
    assert_eq!(after.0, before, "no switch");
    assert_eq!(after.1, releases, "the partial release was removed");
    assert_eq!(after.2.as_deref(), Some(sha(1).as_str()));
    assert!(!after.3, "lock released");
}

/// Faults while the package is in flight: sshd dies mid-upload (then comes back), and
/// tj-deploy is SIGKILLed mid-upload. Nothing is extracted, nothing half-written stays, and a
/// later deploy goes through (after `unlock` for the SIGKILL, whose lock names its owner).
#[test]
fn faults_mid_upload_leave_nothing_half_written() {
    let mut sb = Sandbox::new("upload");
    sb.deploy(&sha(1)).expect(0);
    let before = sb.current();
    let releases = sb.releases();
    let upload_in_flight = |sb: &Sandbox, n: u32| {
        sb.set_app(&format!("{n}.0.0"), false);
        // Incompressible, so the upload takes long enough to be cut.
        support::sh_ok(&format!(
            "head -c 200000000 /dev/urandom > {}/random.bin",
            sb.build_dir.display()
        ));
        let run = sb.start_deploy_until(&sha(n), |l| l.contains("▶ upload"));
        std::thread::sleep(std::time::Duration::from_millis(300));
        run
    };

    let run = upload_in_flight(&sb, 2);
    sb.sshd.crash_and_restart(std::time::Duration::from_secs(1));
    let (code, rest) = run.finish();
    assert_eq!(code, Some(1), "{rest}");
    assert!(
        rest.lines().any(|l| l.starts_with("error: ") && l.contains("upload")),
        "{rest}"
    );
    assert!(!sb.lock_exists());
    assert_eq!(sb.releases(), releases);
    assert_intact(&sb, &before);

    let mut run = upload_in_flight(&sb, 3);
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    assert!(sb.lock_exists(), "a SIGKILLed run cannot release its lock");
    let run = sb.deploy(&sha(3));
    run.expect(3);
    assert!(run.error_line().contains("held by"), "{}", run.error_line());
    Run::of(sb.cmd(&["unlock", "-e", "staging"]).output().unwrap()).expect(0);
    assert_eq!(sb.releases(), releases, "nothing was extracted");
    assert_intact(&sb, &before);
    sb.deploy(&sha(3)).expect(0);
    let leftovers: Vec<_> = std::fs::read_dir(sb.deploy_dir.join(".tj-deploy/packages"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".upload."))
        .collect();
    assert!(leftovers.is_empty(), "a cut-off upload's temp file stayed");
}

/// Issue #7 (6): SIGTERM at each step boundary. A `sh` wrapper first on the host's PATH delays
/// every remote command, so the signal lands while the step that just started is still running
/// (or has not even reached its shell). Afterwards, and again once any straggler would have run:
/// v1 serves from a complete release, nothing partial is left, the lock is released.
#[test]
fn sigterm_at_every_step_leaves_the_previous_release_serving() {
    use std::time::Duration;
    let sb = Sandbox::new("sigterm-all");
    sb.deploy(&sha(1)).expect(0);
    let before = sb.current();
    let releases = sb.releases();
    let hostbin = sb.root.join("hostbin");
    std::fs::create_dir_all(&hostbin).unwrap();
    let wrapper = hostbin.join("sh");
    // Each remote shell's pid goes to `pids`, to check afterwards that none outlived its run.
    let pids = sb.root.join("remote-pids");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho $$ >> {}\nsleep 0.4\nexec /bin/sh \"$@\"\n",
            pids.display()
        ),
    )
    .unwrap();
    std::fs::write(&pids, "").unwrap();
    support::sh_ok(&format!(
        "chmod 755 {} {} && chown {} {}",
        hostbin.display(),
        wrapper.display(),
        support::DEPLOY_USER,
        pids.display()
    ));

    let steps = [
        "package", "lock", "inspect", "backup", "upload", "extract", "install", "migrate", "switch", "reload", "verify",
    ];
    for (n, step) in steps.iter().enumerate() {
        let commit = n as u32 + 2;
        // verify: a release whose health fails keeps polling until the signal.
        sb.set_app(&format!("{commit}.0.0"), *step == "verify");
        if *step == "package" {
            support::sh_ok(&format!(
                "head -c 48000000 /dev/urandom > {}/random.bin",
                sb.build_dir.display()
            ));
        }
        let marker = format!("▶ {step} ");
        let run = sb.start_deploy_until(&sha(commit), |l| l.starts_with(&marker));
        std::thread::sleep(Duration::from_millis(150));
        run.signal("TERM");
        let seen = run.seen.clone();
        let (code, rest) = run.finish();
        assert_eq!(code, Some(1), "{step}: {seen}{rest}");
        assert!(rest.contains("cancelled by signal"), "{step}: {rest}");
        assert!(!sb.lock_exists(), "{step}: lock released");
        assert_intact(&sb, &before);
        // A step whose remote shell started late must not act now: the wrapper's delay is over.
        std::thread::sleep(Duration::from_millis(800));
        assert!(!sb.lock_exists(), "{step}: a lock appeared after the run");
        assert_intact(&sb, &before);
        let new: Vec<String> = sb.releases().into_iter().filter(|r| !releases.contains(r)).collect();
        for r in &new {
            assert!(
                sb.deploy_dir.join("releases").join(r).join("BAD_RELEASE").is_file(),
                "{step}: release {r} was left without being marked bad"
            );
        }
        let alive: Vec<String> = std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            // Running, that is: an exited shell not yet reaped (a zombie) has no cmdline.
            .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty()))
            .map(|pid| {
                format!(
                    "{pid}: {}",
                    std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default()
                )
            })
            .collect();
        assert!(alive.is_empty(), "{step}: remote shells still running: {alive:?}");
    }
    std::fs::remove_file(&wrapper).unwrap();
    sb.set_app("20.0.0", false);
    sb.deploy(&sha(20)).expect(0);
    assert_eq!(sb.revision().as_deref(), Some(sha(20).as_str()));
}

/// Crash loops seen at verify: a release whose PM2 instance 0 exits a second after every start
/// (CRASH_AFTER "1 0") passes its health checks on instance 1, but the restarts PM2 counted
/// between the reload and the end of verification are a warning in the summary; with
/// `availability = "enforce"` the deploy fails and rolls back. A normal reload warns nothing.
#[test]
fn a_crash_loop_during_verification_is_a_warning_and_enforce_rolls_it_back() {
    let sb = Sandbox::new("crashloop");
    let said = "during verification (crash loop?)";
    for n in [1, 2] {
        sb.set_app(&format!("{n}.0.0"), false);
        let run = sb.deploy(&sha(n));
        run.expect(0);
        assert!(!run.all().contains(said), "deploy {n}: {}", run.all());
    }
    let crashing = |n: u32| {
        sb.set_app(&format!("{n}.0.0"), false);
        std::fs::write(sb.build_dir.join("CRASH_AFTER"), "1 0").unwrap();
        sb.deploy(&sha(n))
    };
    let restarted = format!("PM2 restarted app {}'s workers", sb.app_name);

    sb.write_config("availability = \"enforce\"");
    let run = crashing(3);
    run.expect(1);
    let line = run.error_line();
    assert!(
        line.contains(&restarted) && line.contains(said) && line.contains("enforce"),
        "{line}"
    );
    assert_eq!(sb.revision().as_deref(), Some(sha(2).as_str()), "v2 serves again");
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "rolled-back", "{last}");

    sb.write_config("");
    let run = crashing(4);
    run.expect(0);
    assert!(
        run.stderr.contains(&restarted) && run.stderr.contains(said),
        "a ::warning:: line: {}",
        run.stderr
    );
    let summary = run.stdout.split("warnings:").nth(1).unwrap_or("");
    assert!(summary.contains(said), "in the summary's warnings: {}", run.stdout);
    let md = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.md")).unwrap();
    assert!(md.contains(said), "deployments.md: {md}");

    // The emergency restart of the crash-looping release says so too (exit 0: it answers).
    let run = Run::of(sb.cmd(&["restart", "-e", "staging"]).output().expect("run tj-deploy"));
    run.expect(0);
    let summary = run.stdout.split("warnings:").nth(1).unwrap_or("");
    assert!(
        summary.contains(&restarted) && summary.contains(said),
        "restart's summary: {}",
        run.all()
    );
}
