//! A database restore that gives back the database as it was dumped. `pg_restore --clean`
//! drops only what the dump holds, so a table a later migration created would stay (and that
//! migration's `CREATE TABLE` fail on the next deploy). This module lists the dump's objects
//! (`pg_restore -l`) and the database's, and drops the tables, views, sequences and
//! enum/domain/composite types in the dump's schemas that the dump does not hold, in the same
//! transaction as the restore.

use std::collections::BTreeSet;

use crate::backup::Manifest;
use crate::config::ReleaseId;
use crate::error::{Error, Result};
use crate::remote::commands::{self, sql_ident};
use crate::remote::layout::Layout;
use crate::remote::{Mode, Transport};

/// An object of the database that the dump does not hold.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extra {
    /// `table`, `view`, `materialized view`, `sequence`, `foreign table`, `type` or `domain`.
    pub kind: String,
    pub schema: String,
    pub name: String,
}

impl Extra {
    pub fn describe(&self) -> String {
        format!("{} {}.{}", self.kind, self.schema, self.name)
    }

    fn is_type(&self) -> bool {
        matches!(self.kind.as_str(), "type" | "domain")
    }

    /// `DROP … IF EXISTS … CASCADE`: an earlier drop may have taken it along, and views or
    /// columns of the dump's tables built on it go too (the restore recreates those).
    fn drop_sql(&self) -> String {
        let kind = self.kind.to_uppercase();
        format!(
            "DROP {kind} IF EXISTS {}.{} CASCADE;",
            sql_ident(&self.schema),
            sql_ident(&self.name)
        )
    }
}

/// What the dump holds, by schema and name.
#[derive(Debug, Default)]
struct Held {
    schemas: BTreeSet<String>,
    relations: BTreeSet<(String, String)>,
    types: BTreeSet<(String, String)>,
}

const RELATIONS: &[&str] = &["MATERIALIZED VIEW", "FOREIGN TABLE", "TABLE", "VIEW", "SEQUENCE"];
const TYPES: &[&str] = &["TYPE", "DOMAIN"];
/// Entries whose desc starts like one above but that define nothing new.
const NOT_DEFINITIONS: &[&str] = &[
    "TABLE DATA ",
    "TABLE ATTACH ",
    "SEQUENCE SET ",
    "SEQUENCE OWNED BY ",
    "MATERIALIZED VIEW DATA ",
];

/// Reads `pg_restore -l` lines: `<id>; <tableoid> <oid> <desc> <schema> <name> <owner>`, where
/// desc may hold spaces (`TABLE DATA`) and the name too; schema and owner are single words.
fn held(toc: &[&str]) -> Held {
    let mut h = Held::default();
    h.schemas.insert("public".to_string());
    for line in toc {
        let Some((_, rest)) = line.split_once("; ") else {
            continue;
        };
        let mut words = rest.splitn(3, ' ');
        let (Some(_), Some(_), Some(entry)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if let Some(name) = entry.strip_prefix("SCHEMA - ") {
            if let Some((schema, _owner)) = name.rsplit_once(' ') {
                h.schemas.insert(schema.to_string());
            }
            continue;
        }
        if NOT_DEFINITIONS.iter().any(|d| entry.starts_with(d)) {
            continue;
        }
        let found = RELATIONS.iter().chain(TYPES).find_map(|d| {
            let after = entry.strip_prefix(d)?.strip_prefix(' ')?;
            let (schema, rest) = after.split_once(' ')?;
            let (name, _owner) = rest.rsplit_once(' ')?;
            Some((*d, schema, name))
        });
        let Some((desc, schema, name)) = found else { continue };
        if schema == "-" {
            continue;
        }
        h.schemas.insert(schema.to_string());
        let key = (schema.to_string(), name.to_string());
        if TYPES.contains(&desc) {
            h.types.insert(key);
        } else {
            h.relations.insert(key);
        }
    }
    h
}

/// The database's objects (`kind\tschema\tname` lines) in the dump's schemas that it lacks;
/// relations first, then types.
fn extras(h: &Held, live: &[&str]) -> Vec<Extra> {
    let mut out: Vec<Extra> = live
        .iter()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let (kind, schema, name) = (f.next()?, f.next()?, f.next()?);
            let e = Extra {
                kind: kind.to_string(),
                schema: schema.to_string(),
                name: name.to_string(),
            };
            let key = (e.schema.clone(), e.name.clone());
            let kept = if e.is_type() { &h.types } else { &h.relations };
            (h.schemas.contains(&e.schema) && !kept.contains(&key)).then_some(e)
        })
        .collect();
    out.sort_by_key(|e| (e.is_type(), e.schema.clone(), e.name.clone()));
    out
}

/// Restores backup `backup`'s db.dump over the database, dropping first, in the same
/// transaction, what the dump does not hold. Returns the dropped objects, described.
pub async fn restore<T: Transport>(t: &T, l: &Layout, backup: ReleaseId, manifest: &Manifest) -> Result<Vec<String>> {
    let db = manifest
        .file("db.dump")
        .ok_or_else(|| Error::failed(format!("{}: backup {backup} has no db.dump to restore", t.name())))?;
    let conn = crate::backup::database_conn(t, l, "cannot restore the database:").await?;
    let what = format!("{}: restore database from backup {backup}", t.name());
    let out = t
        .run(&commands::restore_inventory(l, backup, &conn)?, Mode::Capture)
        .await?
        .check(&what)?;
    let lines = |prefix: &str| -> Vec<&str> { out.stdout.lines().filter_map(|l| l.strip_prefix(prefix)).collect() };
    let extra = extras(&held(&lines("toc ")), &lines("live "));
    let drops: Vec<String> = extra.iter().map(Extra::drop_sql).collect();
    let script = commands::restore_database(l, backup, &db.sha256, &conn, &drops.join("\n"))?;
    t.run(&script, Mode::Stream).await?.check(&what)?;
    Ok(extra.iter().map(Extra::describe).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOC: &str = ";\n; Archive created at 2026-11-28 02:00:00 UTC\n;\n\
        215; 1259 16390 TABLE public trades tj\n\
        216; 1259 16389 SEQUENCE public trades_id_seq tj\n\
        217; 0 16390 TABLE DATA public trades tj\n\
        218; 1247 16400 TYPE public Role tj\n\
        219; 2615 16401 SCHEMA - app tj\n\
        220; 1259 16402 TABLE app my table tj\n\
        221; 1259 16403 VIEW public open_trades tj\n";

    fn live(rows: &[(&str, &str, &str)]) -> Vec<String> {
        rows.iter().map(|(k, s, n)| format!("{k}\t{s}\t{n}")).collect()
    }

    #[test]
    fn what_the_dump_lacks_in_its_schemas_is_dropped() {
        let toc: Vec<&str> = TOC.lines().collect();
        let h = held(&toc);
        assert!(h.relations.contains(&("app".into(), "my table".into())));
        assert!(h.types.contains(&("public".into(), "Role".into())));
        let rows = live(&[
            ("table", "public", "trades"),
            ("sequence", "public", "trades_id_seq"),
            ("view", "public", "open_trades"),
            ("type", "public", "Role"),
            ("table", "app", "my table"),
            ("type", "public", "Status"),
            ("table", "public", "audit \"log\""),
            ("view", "app", "recent"),
            // A schema the dump does not hold is not ours to clean.
            ("table", "other", "kept"),
        ]);
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        let e = extras(&h, &rows);
        let described: Vec<String> = e.iter().map(Extra::describe).collect();
        assert_eq!(
            described,
            ["view app.recent", "table public.audit \"log\"", "type public.Status"]
        );
        assert_eq!(
            e[1].drop_sql(),
            "DROP TABLE IF EXISTS \"public\".\"audit \"\"log\"\"\" CASCADE;"
        );
        assert_eq!(e[0].drop_sql(), "DROP VIEW IF EXISTS \"app\".\"recent\" CASCADE;");
    }

    #[test]
    fn an_empty_dump_still_covers_public() {
        let rows = live(&[("table", "public", "later")]);
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        assert_eq!(extras(&held(&[]), &rows).len(), 1);
    }
}
