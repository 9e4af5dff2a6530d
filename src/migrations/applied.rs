//! What the database itself says is applied, for a first deploy (no live release to compare
//! with): Prisma's `_prisma_migrations` table, read on the database host with psql through the
//! same private PGPASSFILE as the backups (DESIGN.md §7 "First deploy and migrations").

use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};

/// The answer of the database host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The table exists; these migrations are applied (finished, not rolled back).
    Listed(Vec<String>),
    /// The database has no `_prisma_migrations` table: nothing was migrated by Prisma.
    NoTable,
    /// The table could not be read, and why.
    Unknown(String),
}

/// Reads `_prisma_migrations` in Prisma's schema of `DATABASE_URL` (`public` by default).
pub async fn read<T: Transport>(t: &T, l: &Layout) -> Applied {
    let conn = match crate::backup::database_conn(t, l, "cannot read _prisma_migrations:").await {
        Ok(c) => c,
        Err(e) => return Applied::Unknown(e.message),
    };
    let schema = conn.schema.clone().unwrap_or_else(|| "public".to_string());
    let script = match commands::prisma_migrations(l, &conn, &schema) {
        Ok(s) => s,
        Err(e) => return Applied::Unknown(e.message),
    };
    let what = format!("{}: read _prisma_migrations", t.name());
    match t.run(&script, Mode::Capture).await.and_then(|o| o.check(&what)) {
        Ok(out) => parse(&out.stdout, t.name()),
        Err(e) => Applied::Unknown(e.message),
    }
}

fn parse(stdout: &str, host: &str) -> Applied {
    let mut lines = stdout.lines();
    match lines.next() {
        Some("table") => Applied::Listed(
            lines
                .filter_map(|l| l.strip_prefix("applied "))
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        Some("no-table") => Applied::NoTable,
        Some("no-psql") => Applied::Unknown(format!("{host}: psql is not installed")),
        _ => Applied::Unknown(format!("{host}: unexpected answer from psql")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_answers() {
        assert_eq!(
            parse("table\napplied 1_init\napplied 2_x\n", "h"),
            Applied::Listed(vec!["1_init".into(), "2_x".into()])
        );
        assert_eq!(parse("table\n", "h"), Applied::Listed(vec![]));
        assert_eq!(parse("no-table\n", "h"), Applied::NoTable);
        assert!(matches!(parse("no-psql\n", "h"), Applied::Unknown(m) if m.contains("psql")));
        assert!(matches!(parse("", "h"), Applied::Unknown(_)));
    }
}
