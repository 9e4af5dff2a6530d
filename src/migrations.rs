//! Migration review: which migrations a change brings (the package's `migrations_dir`, one
//! directory per migration with a `migration.sql`, minus those already live), and which of
//! their statements can lose data or break the running release. A small SQL tokenizer keeps
//! comments, string literals, dollar-quoted bodies and quoted identifiers from being read as
//! statements. Also the `destructive_migrations` gate of a deploy. Pure functions, no I/O but
//! reading the package's files.
//!
//! Flagged: `DROP TABLE`, `DROP SCHEMA`, `TRUNCATE`, `ALTER TABLE … DROP [COLUMN]`,
//! `ALTER TABLE … ALTER [COLUMN] … [SET DATA] TYPE`, `ALTER TABLE … RENAME` (table or column,
//! not a constraint), `SET NOT NULL`, `ADD [COLUMN] … NOT NULL` without `DEFAULT` (nor an
//! identity/serial column), and `DELETE` / `UPDATE` without a `WHERE`.
//! Deliberately not flagged: `DROP INDEX [CONCURRENTLY]` — it loses no data and the running
//! release keeps working (only slower); the `CONCURRENTLY` form also takes no blocking lock.

use std::path::Path;

use serde::Serialize;

use crate::config::{Config, ReleaseId};
use crate::error::{Error, Result};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport, commands};
use crate::ui;

/// One statement that can lose data or break the running release.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Flag {
    pub migration: String,
    /// The migration file relative to the repository root (check-run annotations need that).
    pub path: String,
    pub line: usize,
    /// What was found, e.g. `DROP COLUMN`.
    pub what: String,
    /// The statement on one line, cut to 160 characters.
    pub statement: String,
}

impl Flag {
    pub fn describe(&self) -> String {
        format!("{}:{}: {} — {}", self.path, self.line, self.what, self.statement)
    }
}

/// The review of one run: what is pending against what, what is flagged, and the decision.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct Review {
    /// What the package was compared with, e.g. `release 20260118_143000 on app-1`.
    pub against: String,
    pub pending: Vec<String>,
    pub flags: Vec<Flag>,
    /// The gate's decision in words (empty in a PR check).
    pub decision: String,
    /// The deploy gate refused these migrations.
    pub refused: bool,
}

/// `destructive_migrations`: what a deploy does with flagged statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Allow,
    Confirm,
    Refuse,
}

impl Policy {
    pub fn parse(key: &str, s: &str) -> Result<Self> {
        match s {
            "allow" => Ok(Policy::Allow),
            "confirm" => Ok(Policy::Confirm),
            "refuse" => Ok(Policy::Refuse),
            other => Err(Error::invalid(format!(
                "{key}: {other:?} is not \"allow\", \"confirm\" or \"refuse\""
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Allow => "allow",
            Policy::Confirm => "confirm",
            Policy::Refuse => "refuse",
        }
    }
}

/// The migrations under `dir` (directories holding a `migration.sql`), sorted by name.
/// A missing directory has none.
pub fn list(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::failed(format!("migrations: cannot read {}: {e}", dir.display()))),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("migration.sql").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Reviews the package's migrations under `dir` that are not in `live`. `path_prefix` is `dir`
/// relative to the repository root (for annotation paths), e.g. `prisma/migrations`.
pub fn review(dir: &Path, path_prefix: &str, live: &[String], against: &str) -> Result<Review> {
    let mut r = Review {
        against: against.to_string(),
        ..Review::default()
    };
    for name in list(dir)?.into_iter().filter(|n| !live.contains(n)) {
        let file = dir.join(&name).join("migration.sql");
        let bytes = std::fs::read(&file)
            .map_err(|e| Error::failed(format!("migrations: cannot read {}: {e}", file.display())))?;
        let sql = String::from_utf8_lossy(&bytes);
        let path = if path_prefix.is_empty() {
            format!("{name}/migration.sql")
        } else {
            format!("{}/{name}/migration.sql", path_prefix.trim_end_matches('/'))
        };
        for (line, what, statement) in flag_sql(&sql) {
            r.flags.push(Flag {
                migration: name.clone(),
                path: path.clone(),
                line,
                what: what.to_string(),
                statement,
            });
        }
        r.pending.push(name);
    }
    Ok(r)
}

/// The deploy gate. `live` is the host's current release and its migration names, `None` when
/// there is no live release (a first deploy: every migration is pending, flags only warn).
/// The review carries the decision; [`Review::verdict`] turns a refusal into an error.
pub fn deploy_verdict(
    dir: &Path,
    path_prefix: &str,
    live: Option<(&str, &[String])>,
    policy: Policy,
    allowed: bool,
) -> Result<Review> {
    let against = match live {
        Some((release, _)) => format!("live release {release}"),
        None => "no live release (first deploy)".to_string(),
    };
    let mut r = review(dir, path_prefix, live.map(|l| l.1).unwrap_or(&[]), &against)?;
    (r.decision, r.refused) = match (r.flags.is_empty(), live.is_some(), policy, allowed) {
        (true, _, _, _) => ("no destructive statement".to_string(), false),
        (false, false, _, _) => ("first deploy: flagged statements are a warning only".to_string(), false),
        (false, true, Policy::Allow, _) => ("allowed (destructive_migrations = \"allow\")".to_string(), false),
        (false, true, Policy::Confirm, true) => ("allowed by --allow-destructive-migrations".to_string(), false),
        (false, true, Policy::Confirm, false) => (
            "refused: destructive_migrations = \"confirm\" and --allow-destructive-migrations \
             (input allow-destructive-migrations: true) was not given"
                .to_string(),
            true,
        ),
        (false, true, Policy::Refuse, _) => ("refused: destructive_migrations = \"refuse\"".to_string(), true),
    };
    Ok(r)
}

impl Review {
    /// `Err(Refused)` naming the statements when the gate refused.
    pub fn verdict(&self) -> Result<()> {
        if !self.refused {
            return Ok(());
        }
        let named = self.flags.iter().map(Flag::describe).collect::<Vec<_>>().join("; ");
        Err(Error::refused(format!(
            "gate destructive migrations: {named}; {}; nothing was changed",
            self.decision
        )))
    }
}

/// The deploy's migration gate on the host `t` (the database host), run while the lock is
/// held and before anything changes: the package's migrations against `current`'s.
pub async fn deploy_gate<T: Transport>(
    t: &T,
    l: &Layout,
    current: Option<ReleaseId>,
    config: &Config,
    allowed: bool,
) -> Result<Review> {
    let dir = &config.env.migrations_dir;
    let live = match current {
        Some(id) => {
            let out = t
                .run(&commands::list_migrations(l, id, dir), Mode::Capture)
                .await?
                .check(&format!("{}: list migrations", t.name()))?;
            let names: Vec<String> = out
                .stdout
                .lines()
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
            Some((id.to_string(), names))
        }
        None => None,
    };
    let live = live.as_ref().map(|(id, names)| (id.as_str(), names.as_slice()));
    let policy = config.env.destructive_migrations;
    let r = deploy_verdict(&config.package_dir.join(dir), dir, live, policy, allowed)?;
    for f in &r.flags {
        ui::warn(&format!("destructive migration statement: {}", f.describe()));
    }
    if !r.pending.is_empty() {
        ui::info(&format!(
            "migrations pending against {}: {}; {}",
            r.against,
            r.pending.join(", "),
            r.decision
        ));
    }
    Ok(r)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A keyword or bare identifier, upper-cased.
    Word(String),
    /// A quoted identifier, a string or a number: never a keyword.
    Value,
    Sym(u8),
    Semi,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    start: usize,
    end: usize,
    depth: usize,
}

/// Splits SQL into tokens, skipping comments; strings and quoted identifiers become [`Tok::Value`].
fn tokenize(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let (mut i, mut line, mut depth) = (0, 1, 0usize);
    let mut out = Vec::new();
    let at = |i: usize, s: &[u8]| b.get(i..i + s.len()) == Some(s);
    // Moves `i` past `n` bytes, counting lines.
    let advance = |i: &mut usize, line: &mut usize, to: usize| {
        *line += b[*i..to.min(b.len())].iter().filter(|&&c| c == b'\n').count();
        *i = to.min(b.len());
    };
    while i < b.len() {
        let (start, start_line) = (i, line);
        let c = b[i];
        let tok = if c.is_ascii_whitespace() {
            line += usize::from(c == b'\n');
            i += 1;
            continue;
        } else if at(i, b"--") {
            let end = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
            advance(&mut i, &mut line, end);
            continue;
        } else if at(i, b"/*") {
            // PostgreSQL block comments nest.
            let (mut j, mut nest) = (i + 2, 1);
            while j < b.len() && nest > 0 {
                if at(j, b"/*") {
                    nest += 1;
                    j += 2;
                } else if at(j, b"*/") {
                    nest -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            advance(&mut i, &mut line, j);
            continue;
        } else if c == b'\'' || c == b'"' {
            let escapes =
                c == b'\'' && matches!(out.last(), Some(Token { tok: Tok::Word(w), end, .. }) if w == "E" && *end == i);
            if escapes {
                out.pop();
            }
            let mut j = i + 1;
            while j < b.len() {
                // A backslash escape (E'…') or a doubled quote skips two bytes.
                if (escapes && b[j] == b'\\') || (b[j] == c && b.get(j + 1) == Some(&c)) {
                    j += 2;
                } else if b[j] == c {
                    j += 1;
                    break;
                } else {
                    j += 1;
                }
            }
            advance(&mut i, &mut line, j);
            Tok::Value
        } else if c == b'$'
            && let Some(tag_len) = dollar_tag(&b[i..])
        {
            let tag = &b[i..i + tag_len];
            let body = i + tag_len;
            let end = b[body..]
                .windows(tag_len)
                .position(|w| w == tag)
                .map_or(b.len(), |p| body + p + tag_len);
            advance(&mut i, &mut line, end);
            Tok::Value
        } else if c == b'_' || c.is_ascii_alphanumeric() || c >= 0x80 {
            let len = b[i..]
                .iter()
                .position(|&c| !(c == b'_' || c == b'$' || c.is_ascii_alphanumeric() || c >= 0x80))
                .unwrap_or(b.len() - i);
            i += len;
            let word = &sql[start..i];
            if c.is_ascii_digit() {
                Tok::Value
            } else {
                Tok::Word(word.to_ascii_uppercase())
            }
        } else if c == b';' {
            i += 1;
            Tok::Semi
        } else {
            i += 1;
            Tok::Sym(c)
        };
        if tok == Tok::Sym(b')') {
            depth = depth.saturating_sub(1);
        }
        out.push(Token {
            tok: tok.clone(),
            line: start_line,
            start,
            end: i,
            depth,
        });
        if tok == Tok::Sym(b'(') {
            depth += 1;
        }
    }
    out
}

/// The length of a dollar-quote tag (`$$`, `$body$`) at the start of `b`, if it is one.
fn dollar_tag(b: &[u8]) -> Option<usize> {
    let inner = b[1..].iter().position(|&c| c == b'$')?;
    let name = &b[1..1 + inner];
    let ok = name.first().is_none_or(|c| !c.is_ascii_digit())
        && name
            .iter()
            .all(|&c| c == b'_' || c.is_ascii_alphanumeric() || c >= 0x80);
    ok.then_some(inner + 2)
}

/// The flagged statements in `sql`: (line, what, the statement on one line).
pub fn flag_sql(sql: &str) -> Vec<(usize, &'static str, String)> {
    let tokens = tokenize(sql);
    let mut out = Vec::new();
    for stmt in tokens.split(|t| t.tok == Tok::Semi).filter(|s| !s.is_empty()) {
        let text = one_line(&sql[stmt[0].start..stmt[stmt.len() - 1].end]);
        for (line, what) in flags_in(stmt) {
            out.push((line, what, text.clone()));
        }
    }
    out
}

fn one_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > 160 {
        joined.chars().take(159).collect::<String>() + "…"
    } else {
        joined
    }
}

fn word(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token { tok: Tok::Word(w), .. }) => Some(w),
        _ => None,
    }
}

fn flags_in(s: &[Token]) -> Vec<(usize, &'static str)> {
    let w = |i: usize| word(s.get(i));
    let top_level_where = || s.iter().any(|t| t.depth == 0 && word(Some(t)) == Some("WHERE"));
    let line = s[0].line;
    match (w(0), w(1)) {
        (Some("DROP"), Some("TABLE")) => vec![(line, "DROP TABLE")],
        (Some("DROP"), Some("SCHEMA")) => vec![(line, "DROP SCHEMA")],
        (Some("TRUNCATE"), _) => vec![(line, "TRUNCATE")],
        (Some("DELETE"), _) if !top_level_where() => vec![(line, "DELETE without WHERE")],
        (Some("UPDATE"), _) if !top_level_where() => vec![(line, "UPDATE without WHERE")],
        (Some("ALTER"), Some("TABLE")) => s
            .split(|t| t.depth == 0 && t.tok == Tok::Sym(b','))
            .flat_map(alter_action)
            .collect(),
        _ => Vec::new(),
    }
}

/// Flags in one comma-separated action of an `ALTER TABLE`.
fn alter_action(a: &[Token]) -> Vec<(usize, &'static str)> {
    let w = |i: usize| word(a.get(i));
    let mut out = Vec::new();
    for (i, t) in a.iter().enumerate().filter(|(_, t)| t.depth == 0) {
        let Some(k) = word(Some(t)) else { continue };
        let found = match k {
            "DROP" => match a.get(i + 1).map(|t| &t.tok) {
                Some(Tok::Value) => Some("DROP COLUMN"),
                Some(Tok::Word(n))
                    if !["CONSTRAINT", "DEFAULT", "NOT", "IDENTITY", "EXPRESSION"].contains(&n.as_str()) =>
                {
                    Some("DROP COLUMN")
                }
                _ => None,
            },
            "RENAME" if w(i + 1) != Some("CONSTRAINT") => Some(if w(i + 1) == Some("TO") {
                "RENAME TABLE"
            } else {
                "RENAME COLUMN"
            }),
            "TYPE"
                if i >= 2
                    && ((w(i - 1) == Some("DATA") && w(i - 2) == Some("SET"))
                        || w(i - 2) == Some("ALTER")
                        || (w(i - 2) == Some("COLUMN") && i >= 3 && w(i - 3) == Some("ALTER"))) =>
            {
                Some("ALTER … TYPE")
            }
            "SET" if w(i + 1) == Some("NOT") && w(i + 2) == Some("NULL") => Some("SET NOT NULL"),
            "ADD" if adds_required_column(&a[i + 1..]) => Some("ADD COLUMN … NOT NULL without DEFAULT"),
            _ => None,
        };
        if let Some(f) = found {
            out.push((t.line, f));
        }
    }
    out
}

/// `ADD [COLUMN] name type … NOT NULL` with nothing that fills the existing rows.
fn adds_required_column(rest: &[Token]) -> bool {
    let words: Vec<&str> = rest
        .iter()
        .filter(|t| t.depth == 0)
        .filter_map(|t| word(Some(t)))
        .collect();
    let constraint = ["CONSTRAINT", "PRIMARY", "UNIQUE", "FOREIGN", "CHECK", "EXCLUDE"];
    if words.first().is_some_and(|w| constraint.contains(w)) {
        return false;
    }
    let not_null = words.windows(2).any(|p| p == ["NOT", "NULL"]);
    let filled = words
        .iter()
        .any(|w| ["DEFAULT", "GENERATED", "SERIAL", "BIGSERIAL", "SMALLSERIAL"].contains(w));
    not_null && !filled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whats(sql: &str) -> Vec<(usize, &'static str)> {
        flag_sql(sql).into_iter().map(|(l, w, _)| (l, w)).collect()
    }

    #[test]
    fn every_destructive_statement_is_flagged_with_its_line() {
        let sql = "-- a Prisma migration\n\
            DROP TABLE \"Old\";\n\
            ALTER TABLE \"User\" DROP COLUMN \"age\";\n\
            ALTER TABLE users DROP nickname, ADD COLUMN email TEXT NOT NULL;\n\
            ALTER TABLE \"T\" ALTER COLUMN \"qty\" SET DATA TYPE BIGINT;\n\
            ALTER TABLE \"T\" ALTER \"price\" TYPE NUMERIC USING price::numeric;\n\
            ALTER TABLE \"T\" RENAME TO \"Trades\";\n\
            ALTER TABLE \"T\" RENAME COLUMN \"a\" TO \"b\";\n\
            ALTER TABLE \"T\" ALTER COLUMN \"side\" SET NOT NULL;\n\
            TRUNCATE trades;\n\
            DROP SCHEMA legacy CASCADE;\n\
            DELETE FROM sessions;\n\
            UPDATE trades SET qty = 0;\n";
        assert_eq!(
            whats(sql),
            vec![
                (2, "DROP TABLE"),
                (3, "DROP COLUMN"),
                (4, "DROP COLUMN"),
                (4, "ADD COLUMN … NOT NULL without DEFAULT"),
                (5, "ALTER … TYPE"),
                (6, "ALTER … TYPE"),
                (7, "RENAME TABLE"),
                (8, "RENAME COLUMN"),
                (9, "SET NOT NULL"),
                (10, "TRUNCATE"),
                (11, "DROP SCHEMA"),
                (12, "DELETE without WHERE"),
                (13, "UPDATE without WHERE"),
            ]
        );
        let (_, _, text) = &flag_sql("ALTER TABLE \"User\"\n  DROP COLUMN \"age\";")[0];
        assert_eq!(text, "ALTER TABLE \"User\" DROP COLUMN \"age\"");
    }

    #[test]
    fn false_friends_are_not_flagged() {
        let sql = "-- DROP TABLE x;\n\
            /* TRUNCATE y; /* nested */ DELETE FROM z; */\n\
            INSERT INTO notes (body) VALUES ('DROP TABLE users; -- not sql'), (E'it\\'s; TRUNCATE t');\n\
            CREATE FUNCTION f() RETURNS void AS $body$ BEGIN DELETE FROM t; END $body$ LANGUAGE plpgsql;\n\
            DO $$ BEGIN TRUNCATE t; END $$;\n\
            ALTER TABLE \"x\" ADD COLUMN \"DROP\" TEXT;\n\
            ALTER TABLE t ADD COLUMN a INTEGER NOT NULL DEFAULT 0;\n\
            ALTER TABLE t ADD COLUMN id BIGSERIAL NOT NULL;\n\
            ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL);\n\
            ALTER TABLE t ALTER COLUMN a DROP NOT NULL, ALTER COLUMN b DROP DEFAULT;\n\
            ALTER TABLE t DROP CONSTRAINT t_pkey;\n\
            ALTER TABLE t RENAME CONSTRAINT a TO b;\n\
            ALTER TABLE t ADD COLUMN \"type\" TEXT;\n\
            ALTER TYPE \"Role\" RENAME TO \"Role_old\";\n\
            DELETE FROM sessions WHERE expires < now();\n\
            UPDATE trades SET qty = 0 WHERE id IN (SELECT id FROM t);\n\
            DROP INDEX CONCURRENTLY trades_symbol_idx;\n\
            DROP INDEX trades_side_idx;\n\
            CREATE TABLE \"DROP TABLE\" (id int);\n";
        assert_eq!(whats(sql), vec![]);
    }

    #[test]
    fn a_subquery_where_does_not_count_for_the_statement() {
        assert_eq!(
            whats("DELETE FROM a USING (SELECT id FROM b WHERE x) s;"),
            vec![(1, "DELETE without WHERE")]
        );
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for sql in [
            "'abc",
            "\"abc",
            "$$ abc",
            "/* abc",
            "E'\\",
            "$",
            "DROP",
            "ü DROP TABLE ü;",
        ] {
            let _ = flag_sql(sql);
        }
        assert_eq!(whats("ü; DROP TABLE ü"), vec![(1, "DROP TABLE")]);
    }

    fn package(migrations: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, sql) in migrations {
            std::fs::create_dir_all(d.path().join(name)).unwrap();
            std::fs::write(d.path().join(name).join("migration.sql"), sql).unwrap();
        }
        std::fs::create_dir_all(d.path().join("not_a_migration")).unwrap();
        std::fs::write(d.path().join("migration_lock.toml"), "provider = \"postgresql\"").unwrap();
        d
    }

    #[test]
    fn pending_is_what_the_live_release_lacks() {
        let d = package(&[("1_init", "CREATE TABLE t (a int);"), ("2_drop", "\n\nDROP TABLE t;")]);
        assert_eq!(list(d.path()).unwrap(), vec!["1_init", "2_drop"]);
        let r = review(d.path(), "prisma/migrations", &["1_init".to_string()], "x").unwrap();
        assert_eq!(r.pending, vec!["2_drop"]);
        assert_eq!(r.flags.len(), 1);
        assert_eq!(r.flags[0].path, "prisma/migrations/2_drop/migration.sql");
        assert_eq!(r.flags[0].line, 3);
        assert!(list(&d.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn the_gate_in_its_three_modes() {
        let d = package(&[("1_init", "CREATE TABLE t (a int);"), ("2_drop", "DROP TABLE t;")]);
        let live = vec!["1_init".to_string()];
        let verdict =
            |p, allowed, live: Option<(&str, &[String])>| deploy_verdict(d.path(), "m", live, p, allowed).unwrap();
        let on = Some(("20260101_000000", live.as_slice()));
        let r = verdict(Policy::Allow, false, on);
        assert!(r.decision.starts_with("allowed") && r.verdict().is_ok());
        let e = verdict(Policy::Confirm, false, on).verdict().unwrap_err();
        assert_eq!(e.kind, crate::error::Kind::Refused);
        assert!(
            e.message.contains("m/2_drop/migration.sql:1: DROP TABLE"),
            "{}",
            e.message
        );
        let r = verdict(Policy::Confirm, true, on);
        assert!(r.decision.contains("--allow-destructive") && r.verdict().is_ok());
        assert!(verdict(Policy::Refuse, true, on).verdict().is_err());
        // First deploy: a warning only; nothing pending: nothing to decide.
        let r = verdict(Policy::Refuse, false, None);
        assert!(r.decision.starts_with("first deploy") && r.verdict().is_ok());
        let all = vec!["1_init".to_string(), "2_drop".to_string()];
        let r = verdict(Policy::Refuse, false, Some(("x", all.as_slice())));
        assert!(r.pending.is_empty() && r.flags.is_empty() && r.verdict().is_ok());
        assert!(Policy::parse("k", "maybe").unwrap_err().message.starts_with("k:"));
    }
}
