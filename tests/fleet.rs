//! Several real hosts (network namespaces, each with its own sshd, mount namespace, PM2 and
//! database; see `support::fleet`): a fleet deploys, fails, rolls back and refuses as one.
//! A fleet never ends on mixed releases, and a refused or unconnectable run leaves every host
//! byte-identical.

mod support;

use support::fleet::{Fleet, Host};
use support::sha;

const CONFIRM: &str = "ROLLBACK FLEET";

#[track_caller]
fn assert_serves(h: &Host, commit: u32, version: &str) {
    assert_eq!(
        h.serving(),
        Some((sha(commit), version.to_string())),
        "{} ({}) must serve {version} on its own address",
        h.spec(),
        h.ns
    );
}

/// Asserts every host's snapshot equals the one taken before, showing only what differs.
#[track_caller]
fn assert_untouched(f: &Fleet, before: &[String], by: &str) {
    for (h, before) in f.hosts.iter().zip(before) {
        let after = h.snapshot();
        let gone: Vec<&str> = before.lines().filter(|l| !after.lines().any(|a| a == *l)).collect();
        let new: Vec<&str> = after.lines().filter(|l| !before.lines().any(|b| b == *l)).collect();
        assert!(
            gone.is_empty() && new.is_empty(),
            "{} changed by {by}:\n--- before\n{}\n--- after\n{}",
            h.spec(),
            gone.join("\n"),
            new.join("\n")
        );
    }
}

fn migrated(f: &Fleet, i: usize, name: &str) -> bool {
    f.psql(i, &format!("SELECT count(*) FROM _tj_migrations WHERE name = '{name}'")) == "1"
}

/// Deploy v1 to three hosts; deploy v2 whose migration fails on the last host only (the two
/// first hosts switched and verified, then switched back); deploy v2 again once the cause is
/// gone; then `rollback --to latest` puts every host back on v1.
#[test]
fn a_failure_on_the_last_host_switches_the_whole_fleet_back_and_rollback_acts_on_all() {
    let f = Fleet::new("fleet", 3);
    f.write_config(&f.specs(), &format!("confirm_rollback = \"{CONFIRM}\""));
    let last = f.hosts.len() - 1;

    // 1. v1 everywhere: the same release id on every host, each with its backup, no lock.
    f.deploy(&sha(1)).expect(0);
    let r1 = f.hosts[0].releases();
    assert_eq!(r1.len(), 1);
    let r1 = r1[0].clone();
    for (i, h) in f.hosts.iter().enumerate() {
        assert_serves(h, 1, "1.0.0");
        assert_eq!(h.releases(), [r1.as_str()], "{}", h.spec());
        assert_eq!(h.current(), Some(format!("releases/{r1}")), "{}", h.spec());
        assert_eq!(h.backups(), [r1.as_str()], "{}", h.spec());
        assert!(h.backup_dir().join(&r1).join("manifest.json").is_file());
        assert!(h.backup_dir().join(&r1).join("db.dump").is_file());
        assert!(!h.lock_exists(), "{}", h.spec());
        assert!(
            migrated(&f, i, "20260115000000_add_notes"),
            "{} migrated its own database",
            h.spec()
        );
        assert!(h.pm2_home.join("pm2.pid").is_file(), "{} runs its own PM2", h.spec());
        // health_url is per host ({host}); the reports name the first host's origin instead.
        let log = std::fs::read_to_string(h.deploy_dir().join(".tj-deploy/deployments.md")).unwrap_or_default();
        assert!(
            log.contains(&format!("http://{}:3000", f.hosts[0].ip)) && !log.contains("{host}"),
            "{}: {log}",
            h.spec()
        );
    }

    // 2. v2 adds a migration that fails on the last host only (its database already has `tags`).
    f.set_app("2.0.0");
    let tags = "20260201000000_add_tags";
    f.add_migration(
        tags,
        "CREATE TABLE tags (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE);",
    );
    f.psql(last, "CREATE TABLE tags (id int); ALTER TABLE tags OWNER TO tj");
    let run = f.deploy(&sha(2));
    run.expect(1);
    let error = run.error_line();
    let bad_host = f.hosts[last].spec();
    assert!(
        error.contains(&format!("{bad_host}: migrate")),
        "the error names the host and step: {error}"
    );
    assert!(error.contains("not reverted"), "{error}");
    let taken_on: Vec<String> = f.hosts.iter().map(|h| h.spec()).collect();
    assert!(
        error.contains(&format!("(taken on {})", taken_on.join(", "))),
        "names the hosts that hold the backup: {error}"
    );
    let r2 = f.hosts[0]
        .releases()
        .into_iter()
        .find(|r| *r != r1)
        .expect("the first host had v2's release");
    for h in &f.hosts[..last] {
        assert!(
            error.contains(&format!("{}: rolled back, release {r1}", h.spec())),
            "{}: {error}",
            h.spec()
        );
        assert!(
            run.all().contains(&format!("verify [{}]", h.spec())),
            "{} switched and verified v2 before the failure",
            h.spec()
        );
        assert_serves(h, 1, "1.0.0");
        assert_eq!(h.current(), Some(format!("releases/{r1}")), "{}", h.spec());
        assert_eq!(h.releases(), [r1.as_str(), r2.as_str()], "{}", h.spec());
        assert!(h.is_bad(&r2), "{}: v2 marked BAD_RELEASE", h.spec());
    }
    let h = &f.hosts[last];
    assert!(!run.all().contains(&format!("switch [{bad_host}]")), "{}", run.all());
    assert_serves(h, 1, "1.0.0");
    assert_eq!(h.current(), Some(format!("releases/{r1}")));
    assert_eq!(h.releases(), [r1.as_str()], "the unfinished release was removed");
    for (i, h) in f.hosts.iter().enumerate() {
        assert!(!h.lock_exists(), "{}", h.spec());
        assert_eq!(h.backups(), [r1.as_str(), r2.as_str()], "{}", h.spec());
        assert_eq!(migrated(&f, i, tags), i != last, "{}", h.spec());
    }

    // The cause gone (the stray table dropped), v2 goes through everywhere: no unlock, no
    // cleanup of releases or backups by hand.
    f.psql(last, "DROP TABLE tags");
    f.deploy(&sha(2)).expect(0);
    let r3 = f.hosts[0].releases().last().unwrap().clone();
    assert!(r3 > r2);
    for (i, h) in f.hosts.iter().enumerate() {
        assert_serves(h, 2, "2.0.0");
        assert_eq!(h.current(), Some(format!("releases/{r3}")), "{}", h.spec());
        assert!(migrated(&f, i, tags), "{}", h.spec());
        assert!(!h.lock_exists(), "{}", h.spec());
    }

    // 4. rollback --to latest: the environment asks for a confirmation, then every host is
    // back on v1 (the newest backup, taken by the v2 deploy, holds it).
    let refused = f.run(&["rollback", "-e", "staging", "--to", "latest"]);
    refused.expect(3);
    assert!(refused.error_line().contains(CONFIRM), "{}", refused.error_line());
    let run = f.run(&["rollback", "-e", "staging", "--to", "latest", "--confirm", CONFIRM]);
    run.expect(0);
    for h in &f.hosts {
        assert_serves(h, 1, "1.0.0");
        assert_eq!(h.current(), Some(format!("releases/{r1}")), "{}", h.spec());
        assert!(h.is_bad(&r3), "{}: the release left is marked BAD_RELEASE", h.spec());
        assert!(!h.lock_exists(), "{}", h.spec());
        let safety = h.backups().last().unwrap().clone();
        assert!(safety > r3, "{}: a safety backup", h.spec());
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(h.backup_dir().join(&safety).join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(
            (m["kind"].as_str(), m["release"].as_str()),
            (Some("safety"), Some(r3.as_str()))
        );
    }
}

/// A lock held on the last host refuses the deploy (exit 3) naming the holder; an
/// unreachable host (its sshd stopped) fails it before anything happens (exit 1) naming the
/// host. Either way every host stays byte-identical, including the first, which the refused
/// run had locked. The hosts are named by address only: `User` and `Port` come from the
/// user's ssh config (`ssh_config`), which tj-deploy includes after its own strict settings.
#[test]
fn a_held_lock_or_an_unreachable_host_leaves_every_host_untouched() {
    let mut f = Fleet::new("fleetno", 2);
    let bare: Vec<String> = f.hosts.iter().map(|h| h.ip.clone()).collect();
    f.write_config(&bare, &format!("ssh_config = \"{}\"", f.ssh_config.display()));
    f.deploy(&sha(1)).expect(0);
    for h in &f.hosts {
        assert_serves(h, 1, "1.0.0");
    }
    f.set_app("2.0.0");

    // 3. The last host's lock is held, as by another deploy that got there first.
    let held = &f.hosts[1];
    let lock = held.deploy_dir().join(".tj-deploy/lock");
    std::fs::create_dir(&lock).unwrap();
    std::fs::write(
        lock.join("owner.json"),
        format!(
            r#"{{"actor":"alice","command":"deploy","environment":"staging","sha":"{}","run_url":"https://github.com/o/r/actions/runs/7","started_at":"2026-11-27T10:00:00Z","token":"123-456-alice"}}"#,
            sha(9)
        ),
    )
    .unwrap();
    support::sh_ok(&format!("chown -R deploy: {}", lock.display()));
    let before = f.snapshots();
    let run = f.deploy(&sha(2));
    run.expect(3);
    let error = run.error_line();
    assert!(
        error.contains(&held.ip) && error.contains("held by alice") && error.contains("actions/runs/7"),
        "{error}"
    );
    assert!(
        run.all().contains(&format!("lock [{}]", f.hosts[0].ip)),
        "the first host was locked"
    );
    assert_untouched(&f, &before, "a refused deploy");
    for h in &f.hosts {
        assert_serves(h, 1, "1.0.0");
    }
    assert!(!f.hosts[0].lock_exists(), "the refused run released the lock it took");
    assert!(f.hosts[1].lock_exists(), "alice's lock is hers to release");
    std::fs::remove_dir_all(&lock).unwrap();

    // 5. The last host cannot be reached.
    f.hosts[1].stop_sshd();
    let before = f.snapshots();
    let run = f.deploy(&sha(2));
    run.expect(1);
    let error = run.error_line();
    assert!(
        error.contains(&format!("connect {}", f.hosts[1].ip)) && error.contains("nothing was changed"),
        "{error}"
    );
    assert_untouched(&f, &before, "a run that could not connect");
    for h in &f.hosts {
        assert_serves(h, 1, "1.0.0");
    }
}
