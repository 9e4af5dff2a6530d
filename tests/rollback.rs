//! Issue #3: rollback and backups against the real sshd, PM2 and PostgreSQL.

mod support;

use std::time::Instant;

use support::{Run, Sandbox, sha};

fn rollback(sb: &Sandbox, extra: &[&str]) -> Run {
    let mut args = vec!["rollback", "-e", "staging"];
    args.extend_from_slice(extra);
    let t0 = Instant::now();
    let run = Run::of(sb.cmd(&args).output().expect("run tj-deploy"));
    println!("rollback {extra:?} took {:?} (exit {})", t0.elapsed(), run.code);
    run
}

fn deploy_versions(sb: &Sandbox, n: u32) -> Vec<String> {
    for v in 1..=n {
        sb.set_app(&format!("{v}.0.0"), false);
        sb.deploy(&sha(v)).expect(0);
    }
    let releases = sb.releases();
    assert_eq!(releases.len(), n as usize);
    releases
}

#[test]
fn rollback_to_latest_then_to_a_named_backup_then_from_a_pruned_release() {
    let sb = Sandbox::new("rb");
    let r = deploy_versions(&sb, 3);
    let backups = sb.backups();
    assert_eq!(backups, r, "one pre-deploy backup per deploy, same ids");

    // latest: the v3 deploy's backup holds v2.
    let run = rollback(&sb, &[]);
    run.expect(0);
    assert_eq!(sb.revision().as_deref(), Some(sha(2).as_str()), "{}", run.all());
    assert_eq!(sb.current(), Some(format!("releases/{}", r[1])));
    assert!(
        sb.deploy_dir.join("releases").join(&r[2]).join("BAD_RELEASE").is_file(),
        "v3 marked bad"
    );
    let safety = sb
        .backups()
        .into_iter()
        .find(|b| !r.contains(b))
        .expect("a safety backup");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.backup_dir.join(&safety).join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["kind"], "safety");
    assert_eq!(
        m["release"],
        r[2].as_str(),
        "the safety backup holds the release we left"
    );
    assert!(!sb.lock_exists());

    // The v2 deploy's backup holds v1.
    rollback(&sb, &["--to", &r[1]]).expect(0);
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));

    // v2's release is gone from disk (the rollback just now pruned it: a bad release never
    // takes a good one's place, only the newest bad one stays): restored from the v3 deploy's
    // backup.
    let v2 = sb.deploy_dir.join("releases").join(&r[1]);
    if v2.exists() {
        std::fs::remove_dir_all(&v2).unwrap();
    }
    let run = rollback(&sb, &["--to", &r[2]]);
    run.expect(0);
    assert!(run.stdout.contains("restore"), "{}", run.stdout);
    assert_eq!(sb.revision().as_deref(), Some(sha(2).as_str()));
    assert_eq!(
        std::fs::read_to_string(sb.deploy_dir.join("releases").join(&r[1]).join("REVISION"))
            .unwrap()
            .trim(),
        sha(2)
    );

    // The listing: newest first, kinds, release states, JSON.
    let out = Run::of(sb.cmd(&["backups", "-e", "staging", "--json"]).output().unwrap());
    out.expect(0);
    let list: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).expect("backups --json");
    assert_eq!(list.len(), 6);
    let ids: Vec<&str> = list.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert_eq!(list.iter().filter(|e| e["kind"] == "safety").count(), 3);
    let table = Run::of(sb.cmd(&["backups", "-e", "staging"]).output().unwrap());
    table.expect(0);
    assert!(
        table.stdout.contains("release state") && table.stdout.contains("BAD_RELEASE"),
        "{}",
        table.stdout
    );
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("\"kind\":\"rollback\"")).count(), 3);
}

#[test]
fn database_is_restored_only_when_asked() {
    let sb = Sandbox::new("rbdb");
    sb.deploy(&sha(1)).expect(0);
    sb.pg.psql(
        "tj",
        "INSERT INTO trades (symbol, side, qty, price) SELECT 'MSFT', 'buy', g, 1 FROM generate_series(1, 3) g",
    );
    sb.set_app("2.0.0", false);
    sb.deploy(&sha(2)).expect(0);
    let b2 = sb.backups()[1].clone();
    sb.pg.psql(
        "tj",
        "INSERT INTO trades (symbol, side, qty, price) SELECT 'TSLA', 'sell', g, 1 FROM generate_series(1, 4) g",
    );

    rollback(&sb, &["--to", &b2]).expect(0);
    assert_eq!(
        sb.pg.psql("tj", "SELECT count(*) FROM trades"),
        "7",
        "without the flag the database is untouched"
    );

    let run = rollback(&sb, &["--to", &b2, "--restore-database"]);
    run.expect(0);
    assert!(
        run.all().contains("data written since then will be lost"),
        "{}",
        run.all()
    );
    assert_eq!(
        sb.pg.psql("tj", "SELECT count(*) FROM trades WHERE symbol = 'MSFT'"),
        "3",
        "rows before the backup intact"
    );
    assert_eq!(
        sb.pg.psql("tj", "SELECT count(*) FROM trades WHERE symbol = 'TSLA'"),
        "0",
        "rows after the backup gone"
    );
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));
    // The safety backup of that run holds the database as it was (7 rows).
    let newest = sb.backups().last().unwrap().clone();
    assert!(sb.backup_dir.join(&newest).join("db.dump").is_file());
}

#[test]
fn refused_and_invalid_rollbacks_change_nothing() {
    let sb = Sandbox::new("rbno");
    deploy_versions(&sb, 2);
    sb.write_config("confirm_rollback = \"ROLLBACK PRODUCTION\"");
    let before = sb.snapshot();

    let run = rollback(&sb, &[]);
    run.expect(3);
    assert!(run.error_line().contains("ROLLBACK PRODUCTION"), "{}", run.stderr);
    rollback(&sb, &["--confirm", "rollback production"]).expect(3);
    assert_eq!(sb.snapshot(), before);

    let ok = ["--confirm", "ROLLBACK PRODUCTION"];
    for bad in [
        "../../etc",
        "20260118_143000; rm -rf /",
        "20200101_000000",
        "",
        "$(touch /tmp/pwned)",
    ] {
        let run = rollback(&sb, &[&ok[..], &["--to", bad]].concat());
        assert!(
            run.code == 2 || run.code == 3,
            "{bad:?}: exit {}\n{}",
            run.code,
            run.all()
        );
        let line = run.error_line();
        assert!(
            line.starts_with("error: to:") || line.contains("no backup"),
            "{bad:?}: {line}"
        );
        assert_eq!(sb.snapshot(), before, "{bad:?} changed the host");
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());

    // A deploy holds the lock: refused with the holder's name.
    let lock = sb.deploy_dir.join(".tj-deploy/lock");
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(lock.join("owner.json"), r#"{"actor":"bob","command":"deploy","environment":"staging","sha":null,"run_url":null,"started_at":"2026-11-27T10:00:00Z","token":"t-bob"}"#).unwrap();
    let before = sb.snapshot();
    let run = rollback(&sb, &ok);
    run.expect(3);
    assert!(run.error_line().contains("bob"), "{}", run.stderr);
    assert_eq!(sb.snapshot(), before);
    assert_eq!(sb.revision().as_deref(), Some(sha(2).as_str()));
}

/// `rollback --restore-database` gives back the database as it was dumped: a table (with a
/// foreign key to a dumped table), a view on it and an enum type that a later migration
/// created are dropped in the restore's transaction, the output names them, and that
/// migration applies again when the release is deployed again.
#[test]
fn restore_database_drops_what_the_backup_does_not_hold() {
    let sb = Sandbox::new("rbextra");
    sb.deploy(&sha(1)).expect(0);
    let v2 = |sb: &Sandbox| {
        sb.set_app("2.0.0", false);
        let d = sb.build_dir.join("prisma/migrations/20260301000000_audit");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("migration.sql"),
            "CREATE TYPE \"AuditKind\" AS ENUM ('buy', 'sell');\n\
             CREATE TABLE audit (id SERIAL PRIMARY KEY, trade_id INT REFERENCES trades(id), kind \"AuditKind\");\n\
             CREATE VIEW audit_kinds AS SELECT kind FROM audit;\n",
        )
        .unwrap();
    };
    // A large object in the backup: pg_restore writing to a file commits the large objects
    // in a transaction of their own unless it runs with --single-transaction.
    sb.pg.psql("tj", "SET ROLE tj; SELECT lo_from_bytea(0, 'x')");
    v2(&sb);
    sb.deploy(&sha(2)).expect(0);
    let b2 = sb.backups()[1].clone();
    // A table the app's role cannot drop (a DBA's) is not the restore's to remove.
    sb.pg
        .psql("tj", "CREATE TABLE dba_notes (x int); GRANT SELECT ON dba_notes TO tj");
    let exists = |sb: &Sandbox| sb.pg.psql("tj", "SELECT to_regclass('public.audit') IS NOT NULL");
    assert_eq!(exists(&sb), "t");

    // pg_restore dying halfway through (just after the large objects) changes nothing: the
    // drops roll back with the rest.
    let hostbin = sb.root.join("hostbin");
    std::fs::create_dir_all(&hostbin).unwrap();
    let real = support::pg_bin("pg_restore");
    std::fs::write(
        hostbin.join("pg_restore"),
        format!(
            "#!/bin/sh\ncase \" $* \" in *' -f - '*) {r} \"$@\" | awk '{{print}} /lo_close/ {{n=1}} n && /^COMMIT;$/ {{exit}} n && ++n > 4 {{exit}}'; exit 1;; esac\nexec {r} \"$@\"\n",
            r = real.display()
        ),
    )
    .unwrap();
    support::sh_ok(&format!("chmod -R 755 {}", hostbin.display()));
    let trades = sb.pg.psql("tj", "SELECT count(*) FROM trades");
    let los = || sb.pg.psql("tj", "SELECT count(*) FROM pg_largeobject_metadata");
    assert_eq!(los(), "1");
    let failed = rollback(&sb, &["--to", &b2, "--restore-database"]);
    failed.expect(1);
    assert!(failed.all().contains("pg_restore could not read"), "{}", failed.all());
    assert!(
        failed
            .error_line()
            .contains("the database is as it was before this rollback"),
        "{}",
        failed.all()
    );
    assert_eq!(exists(&sb), "t", "a failed restore dropped nothing");
    assert_eq!(sb.pg.psql("tj", "SELECT count(*) FROM trades"), trades);
    assert_eq!(los(), "1");
    assert_eq!(sb.revision().as_deref(), Some(sha(2).as_str()));
    std::fs::remove_file(hostbin.join("pg_restore")).unwrap();

    // The drops' CASCADE would reach another role's objects built on what v2 created: the
    // restore refuses, naming them, before any switch.
    sb.pg.psql(
        "tj",
        "CREATE TABLE dba_kinds (k \"AuditKind\"); CREATE VIEW dba_audit AS SELECT id FROM audit; \
         GRANT SELECT ON dba_kinds, dba_audit TO tj",
    );
    let refused = rollback(&sb, &["--to", &b2, "--restore-database"]);
    refused.expect(1);
    println!("{}", refused.error_line());
    for what in ["dba_audit", "dba_kinds"] {
        assert!(refused.all().contains(what), "{what}: {}", refused.all());
    }
    assert_eq!(exists(&sb), "t");
    assert_eq!(sb.revision().as_deref(), Some(sha(2).as_str()));
    sb.pg.psql("tj", "DROP VIEW dba_audit; DROP TABLE dba_kinds");

    // Connecting as a superuser, "what the role owns" is still only what it owns itself:
    // dba_notes (owned by postgres, created after the backup) stays.
    sb.pg.psql("tj", "ALTER ROLE tj SUPERUSER");

    let run = rollback(&sb, &["--to", &b2, "--restore-database"]);
    run.expect(0);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("restore database"))
        .unwrap_or("");
    println!("{line}");
    for what in ["table public.audit", "view public.audit_kinds", "type public.AuditKind"] {
        assert!(
            run.stdout.contains("dropped what the backup does not hold") && run.stdout.contains(what),
            "{what}: {}",
            run.all()
        );
    }
    assert_eq!(exists(&sb), "f", "the table v2's migration created is gone");
    assert_eq!(
        sb.pg.psql("tj", "SELECT to_regclass('public.dba_notes') IS NOT NULL"),
        "t"
    );
    assert!(!run.stdout.contains("dba_notes"), "{}", run.stdout);
    assert_eq!(
        sb.pg
            .psql("tj", "SELECT count(*) FROM pg_type WHERE typname = 'AuditKind'"),
        "0"
    );
    assert_eq!(
        sb.pg.psql("tj", "SELECT to_regclass('public.audit_id_seq') IS NULL"),
        "t"
    );
    assert_eq!(sb.revision().as_deref(), Some(sha(1).as_str()));
    sb.pg.psql("tj", "ALTER ROLE tj NOSUPERUSER");

    // The same migration applies again.
    v2(&sb);
    let run = sb.deploy(&sha(3));
    run.expect(0);
    assert_eq!(exists(&sb), "t");
}
