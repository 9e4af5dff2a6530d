//! The database on a host: `pg_dump` into a backup and `pg_restore` from one, with the password
//! handed to libpq through a private PGPASSFILE written from stdin, and reading `shared/.env`.

use super::*;
use crate::config::ReleaseId;
use crate::remote::layout::Layout;

/// Writes the private `.pgpass` from the script's secret line and points libpq at it; the
/// caller's EXIT trap removes `$W`.
pub(super) fn pgpass(s: Script, conn: &crate::pgconn::PgConn) -> Result<Script, crate::error::Error> {
    let line = conn.pgpass_line()?;
    Ok(s.with_secret(&line)
        .var("CONN", &conn.conninfo())
        // An unreachable database answers within seconds, not after the kernel's TCP timeout.
        .line("PGCONNECT_TIMEOUT=10; export PGCONNECT_TIMEOUT")
        .line("printf '%s\\n' \"$TJ_SECRET\" > \"$W/pgpass\"; TJ_SECRET=")
        .line("PGPASSFILE=\"$W/pgpass\"; export PGPASSFILE"))
}

/// `pg_dump -Fc` into backup `id` (created, private, when the host had no live release), the
/// password through [`pgpass`]. Prints `created` when it made the directory, the `file` line of
/// db.dump, and `manifest <json>` when the backup already has one.
pub fn backup_database(l: &Layout, id: ReleaseId, conn: &crate::pgconn::PgConn) -> Result<Script, crate::error::Error> {
    let s = with_dirs("backup-database", l)
        .line("umask 077")
        .var("F", &l.backup(id))
        .line("mkdir -p \"$B\"")
        .line("created=0; if [ ! -d \"$F\" ]; then mkdir \"$F\"; created=1; echo created; fi")
        .line("W=$(mktemp -d \"${TMPDIR:-/tmp}/tj-pg.XXXXXX\")")
        .line("trap 'rm -rf \"$W\" \"$F/.db.dump.partial\"; if [ $created = 1 ]; then rm -rf \"$F\"; fi' EXIT");
    Ok(pgpass(s, conn)?
        .line("pg_dump -Fc -f \"$F/.db.dump.partial\" -d \"$CONN\"")
        .line("mv -f \"$F/.db.dump.partial\" \"$F/db.dump\"")
        .line("rm -rf \"$W\"; trap - EXIT")
        .line("P=$F; SUM=")
        .with_sum256()
        .line("printf 'file %s %s db.dump\\n' \"$(sum256 \"$F/db.dump\")\" \"$(wc -c < \"$F/db.dump\" | tr -d ' ')\"")
        .line("if [ -f \"$F/manifest.json\" ]; then printf 'manifest '; head -c 4194304 \"$F/manifest.json\" | tr -d '\\n'; echo; fi"))
}

/// Reads `shared/.env` (at most 1 MiB + 1 byte, so the caller can tell it was cut); exit 3
/// when it does not exist. Its text goes to tj-deploy's dotenv parser, never to a shell.
pub fn read_env(l: &Layout) -> Script {
    with_dirs("read-env", l)
        .line("if [ ! -f \"$D/shared/.env\" ]; then exit 3; fi")
        .line("head -c 1048577 \"$D/shared/.env\"")
}

/// The objects a restore compares, outside PostgreSQL's own schemas and extensions: tables,
/// views, sequences not owned by a column, enum/domain/composite types, each only when the
/// app's role owns it itself (not through a role it is a member of: for a superuser,
/// `pg_has_role` is true of every role). Then every schema and role, to read the dump's
/// entries by (`schema`, name, '' and `role`, name, ''). Three columns: kind, schema, name.
const LIVE_OBJECTS: &str = "SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' \
WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table' ELSE 'table' END, n.nspname, c.relname \
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT c.relispartition AND c.relowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) \
AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i')) \
UNION ALL SELECT CASE t.typtype WHEN 'd' THEN 'domain' ELSE 'type' END, n.nspname, t.typname \
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
WHERE t.typowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = t.typrelid AND r.relkind = 'c'))) \
AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype IN ('e', 'i')) \
UNION ALL SELECT 'schema', nspname, '' FROM pg_namespace UNION ALL SELECT 'role', rolname, '' FROM pg_roles";

/// What a restore compares, read only: `toc <line>` for each entry of the backup's db.dump
/// (`pg_restore -l`), a line `catalog`, then [`LIVE_OBJECTS`] with fields and records
/// separated by NULs (names may hold tabs and newlines).
pub fn restore_inventory(
    l: &Layout,
    backup: ReleaseId,
    conn: &crate::pgconn::PgConn,
) -> Result<Script, crate::error::Error> {
    let s = with_dirs("restore-inventory", l)
        .var("F", &format!("{}/db.dump", l.backup(backup)))
        .line("umask 077")
        .line("W=$(mktemp -d \"${TMPDIR:-/tmp}/tj-pg.XXXXXX\")")
        .line("trap 'rm -rf \"$W\"' EXIT");
    Ok(pgpass(s, conn)?
        .var("Q", LIVE_OBJECTS)
        .line("pg_restore -l \"$F\" > \"$W/toc\"")
        .line("psql -X -q -A -t --field-separator-zero --record-separator-zero -v ON_ERROR_STOP=1 -d \"$CONN\" -c \"$Q\" > \"$W/live\"")
        .line("sed 's/^/toc /' \"$W/toc\"")
        .line("echo catalog; cat \"$W/live\"")
        .repeatable())
}

/// Restores the database from a backup's db.dump in one transaction, the password through
/// a private `.pgpass` (see [`backup_database`]). `pg_restore --single-transaction` prints
/// its own `BEGIN;` first, no `COMMIT;` around large objects, and `COMMIT;` only after the
/// whole dump; [`SPLICE`] puts `drops` (the dependents check, then SQL dropping what the dump
/// does not hold) right after that `BEGIN;`, so they commit or roll back with the restore.
pub fn restore_database(
    l: &Layout,
    backup: ReleaseId,
    sha256: &str,
    conn: &crate::pgconn::PgConn,
    drops: &str,
) -> Result<Script, crate::error::Error> {
    let s = verify_backup_file(
        with_dirs("restore-database", l),
        &format!("{}/db.dump", l.backup(backup)),
        sha256,
    )
    .line("umask 077")
    .line("W=$(mktemp -d \"${TMPDIR:-/tmp}/tj-pg.XXXXXX\")")
    .line("trap 'rm -rf \"$W\"' EXIT");
    Ok(pgpass(s, conn)?
        .var("DROPS", drops)
        .var("SPLICE", SPLICE)
        // In a file, not the environment: one environment string is limited to 128 KiB.
        .line("printf '%s\\n' \"$DROPS\" > \"$W/drops\"")
        .line("export W")
        .line("{ pg_restore --single-transaction -f - --clean --if-exists --no-owner \"$F\" || : > \"$W/failed\"; } | { awk \"$SPLICE\" || : > \"$W/spliced-failed\"; } | psql -X -q -v ON_ERROR_STOP=1 -d \"$CONN\" > /dev/null")
        // Without COMMIT, psql's end of input ends the session and the server rolls back. A
        // pg_restore cut off by a dead awk fails too: awk's marker names the real cause.
        .line("if [ -e \"$W/spliced-failed\" ] && [ ! -e \"$W/began\" ]; then echo \"awk stopped before pg_restore's BEGIN for $F (SQL before it, or awk failed); nothing was changed\" >&2; exit 1; fi")
        .line("if [ -e \"$W/spliced-failed\" ]; then echo \"awk stopped while passing on pg_restore's output for $F; the restore runs in one transaction and did not finish\" >&2; exit 1; fi")
        .line("if [ -e \"$W/failed\" ]; then echo \"pg_restore could not read $F; nothing was changed\" >&2; exit 1; fi")
        .line("if [ ! -e \"$W/began\" ]; then echo \"pg_restore printed no BEGIN for $F; nothing was changed\" >&2; exit 1; fi"))
}

/// awk program: passes pg_restore's output on, with `$W/drops` right after its first `BEGIN;`
/// (and `$W/began` made then). Anything but comments, psql meta-commands and blank lines
/// before that `BEGIN;` would run outside the transaction: it stops there instead. The drops
/// run before pg_restore's own SETs, so they get a fixed quoting and search path first
/// (pg_restore's SETs then replace them for the restore).
const SPLICE: &str = "!b && $0 == \"BEGIN;\" { print; print \"SET LOCAL client_min_messages = warning;\"; \
print \"SET LOCAL standard_conforming_strings = on;\"; print \"SET LOCAL search_path = pg_catalog;\"; \
d = ENVIRON[\"W\"] \"/drops\"; while ((getline l < d) > 0) print l; close(d); \
f = ENVIRON[\"W\"] \"/began\"; printf \"\" > f; close(f); b = 1; next } \
!b && $0 != \"\" && $0 !~ /^(--|\\\\)/ { exit 1 } { print }";

/// `s` as an SQL string literal.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as a quoted SQL identifier.
pub fn sql_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Reads Prisma's `_prisma_migrations` in `schema` with psql, the password through
/// [`pgpass`]: prints `no-psql`, `no-table`, or `table` then `applied <name>` for each
/// migration applied (finished and not rolled back). Reads only.
pub fn prisma_migrations(
    l: &Layout,
    conn: &crate::pgconn::PgConn,
    schema: &str,
) -> Result<Script, crate::error::Error> {
    let exists = format!(
        "SELECT to_regclass(format('%I._prisma_migrations', {})) IS NOT NULL",
        sql_literal(schema)
    );
    let table = format!("{}._prisma_migrations", sql_ident(schema));
    let applied = format!(
        "SELECT migration_name FROM {table} WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY 1"
    );
    let s = with_dirs("read _prisma_migrations", l)
        .line("command -v psql >/dev/null 2>&1 || { echo no-psql; exit 0; }")
        .line("umask 077")
        .line("W=$(mktemp -d \"${TMPDIR:-/tmp}/tj-pg.XXXXXX\")")
        .line("trap 'rm -rf \"$W\"' EXIT");
    Ok(pgpass(s, conn)?
        .var("Q1", &exists)
        .var("Q2", &applied)
        .line("e=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -d \"$CONN\" -c \"$Q1\")")
        .line("if [ \"$e\" != t ]; then echo no-table; exit 0; fi")
        .line("psql -X -q -A -t -v ON_ERROR_STOP=1 -d \"$CONN\" -c \"$Q2\" > \"$W/applied\"")
        .line("echo table")
        .line("sed 's/^/applied /' \"$W/applied\"")
        .repeatable())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        let p = |s: &str| crate::config::RemotePath::parse("p", s).unwrap();
        Layout::new(p("/srv/app"), p("/b"))
    }

    fn conn() -> crate::pgconn::PgConn {
        crate::pgconn::PgConn::parse("postgresql://u:s3cr3t-pw@h/db?schema=app").unwrap()
    }

    #[test]
    fn prisma_migrations_quotes_the_schema_and_keeps_the_password_off_the_text() {
        let l = layout();
        let s = prisma_migrations(&l, &conn(), "we\"ird'; drop").unwrap();
        let text = s.text();
        assert!(!text.contains("s3cr3t-pw"), "{text}");
        assert_eq!(s.secret_input().as_deref(), Some("*:*:*:*:s3cr3t-pw\n"));
        // The schema a literal that the server quotes as an identifier (format's %I), the
        // whole statement one shell word.
        assert!(
            text.contains(&quote(
                "SELECT to_regclass(format('%I._prisma_migrations', 'we\"ird''; drop')) IS NOT NULL"
            )),
            "{text}"
        );
        assert!(text.contains("finished_at IS NOT NULL AND rolled_back_at IS NULL"));
    }

    #[test]
    fn the_restore_is_pg_restores_single_transaction_with_the_drops_inside() {
        let l = layout();
        let id = ReleaseId::parse("id", "20260101_000000").unwrap();
        let drops = "DROP TABLE IF EXISTS \"public\".\"x\" CASCADE;";
        let s = restore_database(&l, id, &"a".repeat(64), &conn(), drops).unwrap();
        let text = s.text();
        assert!(!text.contains("s3cr3t-pw"));
        assert!(text.contains(&format!("DROPS={}", quote(drops))));
        // pg_restore's own BEGIN/COMMIT (none around large objects), the drops spliced in.
        assert!(text.contains("pg_restore --single-transaction -f - "), "{text}");
        assert!(
            text.contains("| { awk \"$SPLICE\" || : > \"$W/spliced-failed\"; } | psql"),
            "{text}"
        );
        assert!(!text.contains("export DROPS"), "{text}");
        assert!(!text.contains("echo 'BEGIN;'") && !text.contains("echo 'COMMIT;'"));
        assert!(text.contains("PGCONNECT_TIMEOUT=10"));
    }

    #[test]
    fn splice_puts_the_drops_after_the_first_begin_and_refuses_sql_before_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("drops"), "DROP TABLE \"a\\nb\";\n").unwrap();
        let run = |input: &str| {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg("printf '%s' \"$IN\" | awk \"$SPLICE\"; echo \"rc=$?\"; ls \"$W\"")
                .env("IN", input)
                .env("SPLICE", SPLICE)
                .env("W", dir.path())
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let out = run("--\n\\restrict k\n\nBEGIN;\n\nSET x;\nBEGIN;\nCOMMIT;\n");
        assert_eq!(
            out,
            "--\n\\restrict k\n\nBEGIN;\nSET LOCAL client_min_messages = warning;\n\
             SET LOCAL standard_conforming_strings = on;\nSET LOCAL search_path = pg_catalog;\n\
             DROP TABLE \"a\\nb\";\n\nSET x;\nBEGIN;\nCOMMIT;\nrc=0\nbegan\ndrops\n"
        );
        std::fs::remove_file(dir.path().join("began")).unwrap();
        assert_eq!(run("SET x;\nBEGIN;\n"), "rc=1\ndrops\n");
    }

    /// Runs restore_database's pipeline and checks (from `DROPS=` on) from a script file, with
    /// pg_restore printing `dump` and psql keeping its input in `$W/psql-in`.
    fn run_restore(drops: &str, splice: Option<&str>, dump: &str) -> (i32, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let id = ReleaseId::parse("id", "20260101_000000").unwrap();
        let text = restore_database(&layout(), id, &"a".repeat(64), &conn(), drops)
            .unwrap()
            .text()
            .to_string();
        let at = text.find("\nDROPS=").unwrap();
        let mut body = text[at..].to_string();
        if let Some(splice) = splice {
            body = body.replace("\nexport W\n", &format!("\nexport W\nSPLICE={}\n", quote(splice)));
        }
        let script = format!(
            "set -eu\nW={}; F=db.dump; CONN=x\npg_restore() {{ if [ \"$DUMP\" = fail ]; then return 1; fi; printf '%s' \"$DUMP\"; }}\n\
             psql() {{ cat > \"$W/psql-in\"; }}\n{body}\n",
            quote(dir.path().to_str().unwrap())
        );
        let file = dir.path().join("script.sh");
        std::fs::write(&file, script).unwrap();
        let out = std::process::Command::new("sh")
            .arg(&file)
            .env("DUMP", dump)
            .output()
            .unwrap();
        let psql_in = std::fs::read_to_string(dir.path().join("psql-in")).unwrap_or_default();
        (
            out.status.code().unwrap_or(-1),
            psql_in,
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    #[test]
    fn drops_beyond_an_environment_strings_limit_reach_psql() {
        // ~200 KiB: exported, awk could not even start (E2BIG; Linux allows 128 KiB).
        let drops: String = (0..5000)
            .map(|i| format!("DROP TABLE IF EXISTS \"public\".\"table_{i:05}\" CASCADE;\n"))
            .collect();
        let (rc, psql_in, err) = run_restore(drops.trim_end(), None, "BEGIN;\nSELECT 1;\nCOMMIT;\n");
        assert_eq!(rc, 0, "{err}");
        assert!(
            psql_in.contains("\"table_04999\" CASCADE;\nSELECT 1;\nCOMMIT;\n"),
            "{err}"
        );
    }

    #[test]
    fn a_dead_awk_is_named_and_never_reported_as_success() {
        let dump = "BEGIN;\nSELECT 1;\nCOMMIT;\n";
        let (rc, _, err) = run_restore("", Some("{ exit 2 }"), dump);
        assert_eq!(rc, 1);
        assert!(err.contains("awk stopped before pg_restore's BEGIN"), "{err}");
        let mid = "{ print } $0 == \"BEGIN;\" { f = ENVIRON[\"W\"] \"/began\"; printf \"\" > f; close(f) } /SELECT/ { exit 3 }";
        let (rc, psql_in, err) = run_restore("", Some(mid), dump);
        assert_eq!((rc, psql_in.as_str()), (1, "BEGIN;\nSELECT 1;\n"));
        assert!(err.contains("awk stopped while passing on"), "{err}");
        let (rc, _, err) = run_restore("", None, "fail");
        assert_eq!(rc, 1);
        assert!(err.contains("pg_restore could not read"), "{err}");
    }

    #[test]
    fn live_objects_find_the_role_by_name_not_by_regrole_syntax() {
        // `current_user::regrole` parses the name as an identifier: "AppUser" or "tj.app" fail.
        assert!(!LIVE_OBJECTS.contains("regrole"));
        assert_eq!(
            LIVE_OBJECTS
                .matches("= (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)")
                .count(),
            2
        );
    }
}
