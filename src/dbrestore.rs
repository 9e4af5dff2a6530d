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
use crate::remote::commands::{self, sql_ident, sql_literal};
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

/// What the `CASCADE` of the drops would reach (pg_depend, recursively, through the parts
/// that go with an object: its row and array types, indexes, rules), reduced to the table
/// or type it belongs to. A dependent that is neither an extra nor held by the dump (a
/// DBA's view on a new table, a column of a new enum in another role's table) would be
/// lost without a trace: the block raises an error naming them, and nothing is changed.
const GUARD: &str = "DO $tj$ DECLARE bad text; BEGIN
WITH RECURSIVE extra(classid, objid) AS (VALUES {extras}),
held(kind, nspname, name) AS (VALUES ('', '', ''){held}),
dep(classid, objid, objsubid, deptype) AS (
 SELECT d.classid, d.objid, d.objsubid, d.deptype FROM pg_depend d JOIN extra e ON d.refclassid = e.classid AND d.refobjid = e.objid
 UNION SELECT d.classid, d.objid, d.objsubid, d.deptype FROM pg_depend d JOIN dep p ON d.refclassid = p.classid AND d.refobjid = p.objid AND (p.objsubid = 0 OR d.refobjsubid = p.objsubid)),
owner AS (SELECT p.classid, p.objid, p.objsubid,
 CASE p.classid WHEN 'pg_class'::regclass THEN coalesce((SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = p.objid), p.objid)
  WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_rewrite r WHERE r.oid = p.objid)
  WHEN 'pg_attrdef'::regclass THEN (SELECT a.adrelid FROM pg_attrdef a WHERE a.oid = p.objid)
  WHEN 'pg_trigger'::regclass THEN (SELECT g.tgrelid FROM pg_trigger g WHERE g.oid = p.objid)
  WHEN 'pg_policy'::regclass THEN (SELECT o.polrelid FROM pg_policy o WHERE o.oid = p.objid)
  WHEN 'pg_constraint'::regclass THEN (SELECT nullif(c.conrelid, 0) FROM pg_constraint c WHERE c.oid = p.objid)
  WHEN 'pg_type'::regclass THEN (SELECT nullif(t.typrelid, 0) FROM pg_type t WHERE t.oid = p.objid) END AS rel,
 CASE p.classid WHEN 'pg_type'::regclass THEN (SELECT CASE WHEN t.typrelid <> 0 THEN NULL WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END FROM pg_type t WHERE t.oid = p.objid)
  WHEN 'pg_constraint'::regclass THEN (SELECT nullif(c.contypid, 0) FROM pg_constraint c WHERE c.oid = p.objid) END AS typ
 FROM dep p WHERE p.deptype = 'n')
SELECT string_agg(DISTINCT pg_describe_object(x.classid, x.objid, x.objsubid), ', ') INTO bad FROM owner x
WHERE NOT EXISTS (SELECT 1 FROM extra e WHERE (e.classid = 'pg_class'::regclass AND e.objid = x.rel) OR (e.classid = 'pg_type'::regclass AND e.objid = x.typ))
AND NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN held h ON h.kind = 'r' AND h.nspname = n.nspname AND h.name = c.relname WHERE c.oid = x.rel)
AND NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN held h ON h.kind = 't' AND h.nspname = n.nspname AND h.name = t.typname WHERE t.oid = x.typ);
IF bad IS NOT NULL THEN RAISE EXCEPTION 'tj-deploy: dropping what the backup does not hold would also drop %, which the backup does not hold either; nothing was changed', bad; END IF;
END $tj$;";

/// [`GUARD`] for `extra` against what the dump holds; empty when nothing is dropped.
fn guard_sql(extra: &[Extra], h: &Held) -> String {
    if extra.is_empty() {
        return String::new();
    }
    let extras: Vec<String> = extra
        .iter()
        .map(|e| {
            let name = sql_literal(&format!("{}.{}", sql_ident(&e.schema), sql_ident(&e.name)));
            if e.is_type() {
                format!("('pg_type'::regclass::oid, to_regtype({name})::oid)")
            } else {
                format!("('pg_class'::regclass::oid, to_regclass({name})::oid)")
            }
        })
        .collect();
    let row = |kind: &str, (schema, name): &(String, String)| {
        format!(", ('{kind}', {}, {})", sql_literal(schema), sql_literal(name))
    };
    let held: String = h
        .relations
        .iter()
        .map(|k| row("r", k))
        .chain(h.types.iter().map(|k| row("t", k)))
        .collect();
    GUARD.replace("{extras}", &extras.join(", ")).replace("{held}", &held)
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
    let mut drops: Vec<String> = vec![guard_sql(&extra, &held(&lines("toc ")))];
    drops.extend(extra.iter().map(Extra::drop_sql));
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
    fn the_guard_names_the_extras_and_what_the_dump_holds_as_literals() {
        let toc: Vec<&str> = TOC.lines().collect();
        let h = held(&toc);
        assert_eq!(guard_sql(&[], &h), "");
        let e = [Extra {
            kind: "type".into(),
            schema: "public".into(),
            name: "it's".into(),
        }];
        let sql = guard_sql(&e, &h);
        assert!(sql.contains("to_regtype('\"public\".\"it''s\"')::oid"), "{sql}");
        assert!(sql.contains(", ('r', 'app', 'my table')") && sql.contains(", ('t', 'public', 'Role')"));
        assert!(sql.starts_with("DO $tj$") && sql.ends_with("END $tj$;") && !sql.contains("{held}"));
    }

    #[test]
    fn an_empty_dump_still_covers_public() {
        let rows = live(&[("table", "public", "later")]);
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        assert_eq!(extras(&held(&[]), &rows).len(), 1);
    }
}
