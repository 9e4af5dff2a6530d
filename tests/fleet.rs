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

/// Whether the shared database recorded migration `name` exactly once.
fn migrated_once(f: &Fleet, name: &str) -> bool {
    f.psql(0, &format!("SELECT count(*) FROM _tj_migrations WHERE name = '{name}'")) == "1"
}

/// The install hook of these tests: fails on a host whose `shared/FAIL_INSTALL` exists, and
/// makes the release unhealthy on a host whose `shared/MAKE_UNHEALTHY` exists. It must run on
/// every deploy, so stored dependencies are not reused.
const HOOKS: &str = r#"reuse_dependencies = false
install = 'npm ci --omit=dev --no-audit --no-fund --offline && if [ -e "$TJ_DEPLOY_DIR/shared/FAIL_INSTALL" ]; then echo install-fails-on-this-host >&2; exit 1; fi && if [ -e "$TJ_DEPLOY_DIR/shared/MAKE_UNHEALTHY" ]; then touch UNHEALTHY; fi'"#;

fn touch(h: &Host, name: &str) {
    let p = h.deploy_dir().join("shared").join(name);
    std::fs::write(&p, "").unwrap();
    support::sh_ok(&format!("chown deploy: {}", p.display()));
}

/// The hosts (by index) on which `run` ran `step`.
fn hosts_named(run: &support::Run, step: &str, f: &Fleet) -> Vec<usize> {
    let all = run.all();
    (0..f.hosts.len())
        .filter(|i| all.contains(&format!("{step} [{}]", f.hosts[*i].spec())))
        .collect()
}

/// Three hosts sharing one database, as the Trading Journal runs (issue #15):
/// 1. v1: the one database dump and the one migration run on the database host only;
/// 2. v2 whose install fails on the last host: no host ever switches, nothing of the run is
///    left (no release, no backup), the migration never ran;
/// 3. v2 again: the dump (taken before the migration) lacks v2's table, the migration ran once;
/// 4. `rollback --restore-database` restores the database once, then every host serves v1.
#[test]
fn a_shared_database_is_dumped_and_migrated_once_and_restored_once() {
    let f = Fleet::shared("fleet", 3);
    let last = f.hosts.len() - 1;
    // All three hosts prepared and activated at once; the database lives with the last one.
    f.write_config(
        &f.specs(),
        &format!(
            "confirm_rollback = \"{CONFIRM}\"\nparallel = 3\ndatabase_host = \"{}\"\n{HOOKS}",
            f.hosts[last].spec()
        ),
    );
    let db = last;

    // 1. v1 everywhere; the database work happened once, on the database host.
    let run = f.deploy(&sha(1));
    run.expect(0);
    assert_eq!(hosts_named(&run, "database backup", &f), [db], "{}", run.all());
    assert_eq!(hosts_named(&run, "migrate", &f), [db], "{}", run.all());
    let r1 = f.hosts[0].releases()[0].clone();
    for (i, h) in f.hosts.iter().enumerate() {
        assert_serves(h, 1, "1.0.0");
        assert_eq!(h.current(), Some(format!("releases/{r1}")), "{}", h.spec());
        assert_eq!(h.backups(), [r1.as_str()], "{}", h.spec());
        assert_eq!(
            h.backup_dir().join(&r1).join("db.dump").is_file(),
            i == db,
            "{}",
            h.spec()
        );
        assert!(!h.lock_exists(), "{}", h.spec());
        // health_url is per host ({host}); the reports name the first host's origin instead.
        let log = std::fs::read_to_string(h.deploy_dir().join(".tj-deploy/deployments.md")).unwrap_or_default();
        assert!(
            log.contains(&format!("http://{}:3000", f.hosts[0].ip)) && !log.contains("{host}"),
            "{log}"
        );
    }
    assert!(migrated_once(&f, "20260115000000_add_notes"));

    // 2. v2 brings a migration; install fails on the last host. Every host was prepared
    //    before any switch, so none switched, and the database was never touched.
    f.set_app("2.0.0");
    let tags = "20260201000000_add_tags";
    f.add_migration(
        tags,
        "CREATE TABLE tags (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE);",
    );
    touch(&f.hosts[last], "FAIL_INSTALL");
    let before = f.snapshots();
    let run = f.deploy(&sha(2));
    run.expect(1);
    let error = run.error_line();
    assert!(error.contains(&format!("{}: install", f.hosts[last].spec())), "{error}");
    assert!(
        hosts_named(&run, "switch", &f).is_empty(),
        "no host switched: {}",
        run.all()
    );
    assert!(hosts_named(&run, "migrate", &f).is_empty(), "{}", run.all());
    assert!(!migrated_once(&f, tags), "the migration never ran");
    let logs = |s: &str| {
        s.lines()
            .filter(|l| !l.contains(".tj-deploy/deployments") && !l.contains(".tj-deploy/packages"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (h, before) in f.hosts.iter().zip(&before) {
        assert_serves(h, 1, "1.0.0");
        assert_eq!(
            h.releases(),
            [r1.as_str()],
            "{}: the prepared release was removed",
            h.spec()
        );
        assert_eq!(h.backups(), [r1.as_str()], "{}: the run's backup was removed", h.spec());
        assert!(!h.lock_exists(), "{}", h.spec());
        assert_eq!(
            logs(&h.snapshot()),
            logs(before),
            "{}: only the log and the package cache changed",
            h.spec()
        );
    }

    // 3. The cause gone, v2 goes through: one dump, taken before the one migration.
    std::fs::remove_file(f.hosts[last].deploy_dir().join("shared/FAIL_INSTALL")).unwrap();
    let run = f.deploy(&sha(2));
    run.expect(0);
    assert_eq!(hosts_named(&run, "migrate", &f), [db], "{}", run.all());
    let r2 = f.hosts[0].releases().last().unwrap().clone();
    let dump = f.hosts[db].backup_dir().join(&r2).join("db.dump");
    let listing = support::sh_ok(&format!("pg_restore -l {}", dump.display()));
    assert!(
        listing.contains("_tj_migrations") && !listing.contains("TABLE public tags"),
        "{listing}"
    );
    assert!(migrated_once(&f, tags));
    for (i, h) in f.hosts.iter().enumerate() {
        assert_serves(h, 2, "2.0.0");
        assert_eq!(
            h.backup_dir().join(&r2).join("db.dump").is_file(),
            i == db,
            "{}",
            h.spec()
        );
    }
    let trades = |f: &Fleet| f.psql(0, "SELECT count(*) FROM trades");
    let before_v2 = trades(&f);
    f.psql(
        0,
        "INSERT INTO trades (symbol, side, qty, price) VALUES ('AFTER', 'buy', 1, 1)",
    );
    assert_ne!(trades(&f), before_v2);

    // 4. Rollback with the database: restored once, before any switch; every host on v1.
    let run = f.run(&[
        "rollback",
        "-e",
        "staging",
        "--to",
        "latest",
        "--restore-database",
        "--confirm",
        CONFIRM,
    ]);
    run.expect(0);
    assert_eq!(hosts_named(&run, "restore database", &f), [db], "{}", run.all());
    let all = run.all();
    let restored = all.find("restore database [").unwrap();
    assert!(
        all.find("switch [").is_some_and(|s| s > restored),
        "the database comes before any switch"
    );
    assert_eq!(
        trades(&f),
        before_v2,
        "the row written after v2 is gone: the database was restored"
    );
    assert!(
        !migrated_once(&f, tags),
        "the restored bookkeeping predates v2's migration"
    );
    for h in &f.hosts {
        assert_serves(h, 1, "1.0.0");
        assert!(h.is_bad(&r2), "{}: the release left is marked BAD_RELEASE", h.spec());
        assert!(!h.lock_exists(), "{}", h.spec());
        let safety = h.backups().last().unwrap().clone();
        assert!(safety > r2, "{}: a safety backup", h.spec());
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(h.backup_dir().join(&safety).join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(
            (m["kind"].as_str(), m["release"].as_str()),
            (Some("safety"), Some(r2.as_str()))
        );
    }
}

/// Four hosts activated one at a time (`parallel = 1`): the third fails its verification, so
/// the two switched before it and itself go back to v1, the fourth never switches, and the
/// message says what each host is live on.
#[test]
fn a_failed_verify_on_host_3_of_4_switches_the_switched_ones_back() {
    let f = Fleet::shared("fleetv", 4);
    f.write_config(&f.specs(), &format!("health_timeout = \"4s\"\n{HOOKS}"));
    f.deploy(&sha(1)).expect(0);
    let r1 = f.hosts[0].releases()[0].clone();
    f.set_app("2.0.0");
    touch(&f.hosts[2], "MAKE_UNHEALTHY");
    let run = f.deploy(&sha(2));
    run.expect(1);
    let error = run.error_line();
    assert_eq!(hosts_named(&run, "switch", &f), [0, 1, 2], "{}", run.all());
    let r2 = f.hosts[0].releases().last().unwrap().clone();
    assert!(r2 > r1);
    for h in &f.hosts[..3] {
        assert!(
            error.contains(&format!("{}: rolled back, release {r1}", h.spec())),
            "{error}"
        );
        assert!(h.is_bad(&r2), "{}", h.spec());
    }
    let fourth = f.hosts[3].spec();
    assert!(
        error.contains(&format!("{fourth}: unfinished release {r2} removed, still on {r1}")),
        "{error}"
    );
    assert!(
        error.contains("not reverted") && error.contains(&format!("backup {r2} on {}", f.hosts[0].spec())),
        "{error}"
    );
    for h in &f.hosts {
        assert_serves(h, 1, "1.0.0");
        assert_eq!(h.current(), Some(format!("releases/{r1}")), "{}", h.spec());
        assert!(!h.lock_exists(), "{}", h.spec());
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
