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

/// Prisma's own bookkeeping table, as `prisma migrate deploy` creates it.
const PRISMA_TABLE: &str = r#"CREATE TABLE "_prisma_migrations" (
    "id" VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum" VARCHAR(64) NOT NULL,
    "finished_at" TIMESTAMPTZ,
    "migration_name" VARCHAR(255) NOT NULL,
    "logs" TEXT,
    "rolled_back_at" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0
); ALTER TABLE "_prisma_migrations" OWNER TO tj"#;

/// DESIGN.md §7: with no live release, a migration is pending only if `_prisma_migrations`
/// does not list it as applied (finished, not rolled back), and the policy applies to it;
/// without the table every migration is pending and flagged statements only warn.
#[test]
fn a_first_deploy_reads_prisma_migrations() {
    let sb = Sandbox::new("prismafirst");
    let (a, b) = ("20260301000000_drop_notes", "20260302000000_truncate");
    add_migration(&sb, a, "ALTER TABLE trades DROP COLUMN notes;\n");
    add_migration(&sb, b, "TRUNCATE trades;\n");
    sb.pg.psql("tj", PRISMA_TABLE);
    let row = |n: u32, name: &str, finished: &str, rolled_back: &str| {
        format!("('{n}', 'x', {finished}, '{name}', {rolled_back})")
    };
    let rows = [
        row(1, "20260101000000_init", "now()", "NULL"),
        row(2, "20260115000000_add_notes", "now()", "NULL"),
        row(3, a, "now()", "NULL"),
        // B failed once (never finished), and was applied then marked rolled back: pending.
        row(4, b, "NULL", "NULL"),
        row(5, b, "now()", "now()"),
    ];
    sb.pg.psql(
        "tj",
        &format!(
            "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, rolled_back_at) VALUES {}",
            rows.join(", ")
        ),
    );

    for (policy, allow) in [("refuse", true), ("confirm", false)] {
        sb.write_config(&format!("destructive_migrations = \"{policy}\""));
        let before = bytes_of(&sb);
        let run = deploy(&sb, &sha(1), allow);
        run.expect(3);
        let err = run.error_line();
        assert!(
            err.contains(&format!("prisma/migrations/{b}/migration.sql:1: TRUNCATE"))
                && err.contains(&format!("destructive_migrations = \"{policy}\""))
                && !err.contains("DROP COLUMN"),
            "{policy}: only B is flagged: {err}"
        );
        assert!(
            run.all().contains(&format!(
                "migrations pending against _prisma_migrations (no live release): {b};"
            )),
            "{policy}: only B is pending: {}",
            run.all()
        );
        assert_eq!(bytes_of(&sb), before, "{policy}: a refused deploy touches nothing");
        assert_eq!(sb.current(), None);
    }

    // No table: both are pending, and on a first deploy they only warn, even with "refuse".
    sb.pg.psql("tj", "DROP TABLE _prisma_migrations");
    sb.write_config("destructive_migrations = \"refuse\"");
    let run = deploy(&sb, &sha(1), false);
    run.expect(0);
    assert!(
        run.all().contains("no _prisma_migrations table")
            && run.all().contains(&format!("{a}, {b}"))
            && run
                .all()
                .contains("first deploy: flagged statements are a warning only"),
        "{}",
        run.all()
    );
    let line = last_log_line(&sb);
    assert_eq!(
        line["destructive_migrations"]["decision"],
        "first deploy: flagged statements are a warning only"
    );
    let statements = line["destructive_migrations"]["statements"].as_array().unwrap();
    assert_eq!(statements.len(), 2, "{line}");
}

/// DESIGN.md §7: only a database without `_prisma_migrations` makes a first deploy warn-only.
/// When the table cannot be read (here: nothing listens on DATABASE_URL's port), "refuse" and
/// "confirm" refuse flagged statements, naming why, and touch nothing.
#[test]
fn a_first_deploy_refuses_when_prisma_migrations_cannot_be_read() {
    let sb = Sandbox::new("prismaunread");
    add_migration(
        &sb,
        "20260301000000_drop_notes",
        "ALTER TABLE trades DROP COLUMN notes;\n",
    );
    let port = support::free_port();
    let env = sb.deploy_dir.join("shared/.env");
    let text = std::fs::read_to_string(&env).unwrap();
    let url = text.lines().find_map(|l| l.strip_prefix("DATABASE_URL=")).unwrap();
    let closed = format!("postgresql://tj:pw@127.0.0.1:{port}/tj");
    std::fs::write(&env, text.replace(url, &closed)).unwrap();
    for policy in ["refuse", "confirm"] {
        sb.write_config(&format!("destructive_migrations = \"{policy}\""));
        let before = bytes_of(&sb);
        let run = deploy(&sb, &sha(1), false);
        run.expect(3);
        let err = run.error_line();
        assert!(
            err.contains("DROP COLUMN")
                && err.contains(&format!("destructive_migrations = \"{policy}\""))
                && err.contains("_prisma_migrations could not be read")
                && err.contains(&port.to_string()),
            "{policy}: {err}"
        );
        assert_eq!(bytes_of(&sb), before, "{policy}: a refused deploy touches nothing");
        assert_eq!(sb.current(), None);
    }
}
