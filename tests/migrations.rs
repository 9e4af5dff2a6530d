//! Issue #17: the `destructive_migrations` gate of a deploy, in its three modes, against a real
//! OpenSSH server, PM2 and PostgreSQL (tests/support). A refusal leaves every byte of the host
//! as it was; an allowed destructive deploy records the flagged statements in its log line.

mod support;

use support::{Run, Sandbox, sha};

/// Everything `Sandbox::snapshot` sees plus every file's content.
fn bytes_of(sb: &Sandbox) -> String {
    let sums = support::sh_ok(&format!(
        "cd {} && find srv backups -type f -exec sha256sum {{}} + | sort",
        sb.root.display()
    ));
    format!("{}\n{sums}", sb.snapshot())
}

fn add_migration(sb: &Sandbox, name: &str, sql: &str) {
    let d = sb.build_dir.join("prisma/migrations").join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("migration.sql"), sql).unwrap();
}

fn deploy(sb: &Sandbox, commit: &str, allow: bool) -> Run {
    let mut args = vec!["deploy", "-e", "staging", "--sha", commit];
    if allow {
        args.push("--allow-destructive-migrations");
    }
    Run::of(sb.cmd(&args).output().expect("run tj-deploy"))
}

fn last_log_line(sb: &Sandbox) -> serde_json::Value {
    let log = std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log")).unwrap();
    serde_json::from_str(log.lines().last().unwrap()).unwrap()
}

#[test]
fn destructive_migrations_confirm_refuse_and_allow() {
    let sb = Sandbox::new("destructive");
    deploy(&sb, &sha(1), false).expect(0);
    let first = sb.current();
    let log_lines = |sb: &Sandbox| {
        std::fs::read_to_string(sb.deploy_dir.join(".tj-deploy/deployments.log"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(log_lines(&sb), 1);

    // A change that drops a column. "confirm" is the default where confirm_rollback is set.
    add_migration(
        &sb,
        "20260301000000_drop_notes",
        "-- DROP TABLE trades;\nALTER TABLE trades\n  DROP COLUMN notes;\n",
    );
    sb.write_config("confirm_rollback = \"ROLLBACK STAGING\"");
    let before = bytes_of(&sb);
    let run = deploy(&sb, &sha(2), false);
    run.expect(3);
    let err = run.error_line();
    assert!(
        err.contains("prisma/migrations/20260301000000_drop_notes/migration.sql:3: DROP COLUMN")
            && err.contains("--allow-destructive-migrations")
            && !err.contains("DROP TABLE"),
        "{err}"
    );
    assert!(run.stdout.contains("refused"), "{}", run.stdout);
    assert_eq!(bytes_of(&sb), before, "a refused deploy touches nothing");
    assert!(!sb.lock_exists());

    // "refuse" refuses even with the flag.
    sb.write_config("destructive_migrations = \"refuse\"");
    let run = deploy(&sb, &sha(2), true);
    run.expect(3);
    assert!(
        run.error_line().contains("destructive_migrations = \"refuse\""),
        "{}",
        run.all()
    );
    assert_eq!(bytes_of(&sb), before, "a refused deploy touches nothing");
    assert_eq!(sb.current(), first);

    // "confirm" with the flag deploys, and the log line records the statements.
    sb.write_config("destructive_migrations = \"confirm\"");
    let run = deploy(&sb, &sha(2), true);
    run.expect(0);
    assert!(
        run.stdout.contains("20260301000000_drop_notes")
            && run.stdout.contains("allowed by --allow-destructive-migrations"),
        "{}",
        run.stdout
    );
    let line = last_log_line(&sb);
    assert_eq!(line["status"], "success");
    assert_eq!(
        line["destructive_migrations"]["decision"],
        "allowed by --allow-destructive-migrations"
    );
    assert!(
        line["destructive_migrations"]["statements"][0]
            .as_str()
            .unwrap()
            .contains("DROP COLUMN"),
        "{line}"
    );
    let columns = sb.pg.psql(
        "tj",
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'trades'",
    );
    assert!(!columns.contains("notes"), "the migration ran: {columns}");

    // "allow" (the default without confirm_rollback): only the new migration is pending.
    add_migration(&sb, "20260302000000_truncate", "TRUNCATE trades;\n");
    sb.write_config("");
    let run = deploy(&sb, &sha(3), false);
    run.expect(0);
    let line = last_log_line(&sb);
    let statements = line["destructive_migrations"]["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{line}");
    assert!(statements[0].as_str().unwrap().contains("TRUNCATE"), "{line}");
    assert_eq!(log_lines(&sb), 3, "refusals wrote no log line");
}
