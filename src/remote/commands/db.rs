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

/// Restores the database from a backup's db.dump in one transaction, the password through
/// a private `.pgpass` (see [`backup_database`]).
pub fn restore_database(
    l: &Layout,
    backup: ReleaseId,
    sha256: &str,
    conn: &crate::pgconn::PgConn,
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
        .line("pg_restore --clean --if-exists --no-owner --exit-on-error --single-transaction -d \"$CONN\" \"$F\""))
}

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
    let table = format!("{}._prisma_migrations", sql_ident(schema));
    let exists = format!("SELECT to_regclass({}) IS NOT NULL", sql_literal(&table));
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
