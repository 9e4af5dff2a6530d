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

/// The database's side, read with NUL separators (names may hold tabs and newlines).
#[derive(Debug, Default)]
struct Catalog {
    /// `(kind, schema, name)` of each object a restore may drop.
    objects: Vec<(String, String, String)>,
    schemas: BTreeSet<String>,
    roles: BTreeSet<String>,
}

impl Catalog {
    /// psql `-A -t --field-separator-zero --record-separator-zero` output of three columns
    /// (kind, schema, name; `schema`/`role` rows name one in the second column). psql ends
    /// the last record with the record separator (a NUL); the transport adds a newline.
    fn parse(raw: &str) -> Result<Catalog> {
        let raw = raw.strip_suffix('\n').unwrap_or(raw);
        let raw = raw.strip_suffix('\0').unwrap_or(raw);
        let mut c = Catalog::default();
        if raw.is_empty() {
            return Ok(c);
        }
        let fields: Vec<&str> = raw.split('\0').collect();
        if fields.len() % 3 != 0 {
            return Err(Error::failed(
                "cannot read the database's catalog: unexpected answer from psql",
            ));
        }
        for f in fields.chunks(3) {
            match f[0] {
                "schema" => drop(c.schemas.insert(f[1].to_string())),
                "role" => drop(c.roles.insert(f[1].to_string())),
                kind => c.objects.push((kind.to_string(), f[1].to_string(), f[2].to_string())),
            }
        }
        Ok(c)
    }
}

/// `<a> <b> <owner>` of a `pg_restore -l` entry, where `a` (a schema) and `owner` (a role)
/// may hold spaces too: a split is taken when it is the only one, or the only one whose `a`
/// passes `known_a` and whose owner is a role of the database. Anything else is refused
/// rather than guessed (a misread schema would drop the wrong tables).
fn split_entry<'a>(
    entry: &'a str,
    known_a: &dyn Fn(&str) -> bool,
    roles: &BTreeSet<String>,
) -> Result<(&'a str, &'a str)> {
    let spaces: Vec<usize> = entry.match_indices(' ').map(|(i, _)| i).collect();
    if let [i, j] = spaces[..] {
        return Ok((&entry[..i], &entry[i + 1..j]));
    }
    let mut found = Vec::new();
    for (n, &i) in spaces.iter().enumerate() {
        for &j in &spaces[n + 1..] {
            let (a, b, owner) = (&entry[..i], &entry[i + 1..j], &entry[j + 1..]);
            if known_a(a) && roles.contains(owner) {
                found.push((a, b));
            }
        }
    }
    match found[..] {
        [one] => Ok(one),
        _ => Err(Error::failed(format!(
            "cannot tell schema, name and owner apart in the backup's entry {entry:?}; nothing was changed"
        ))),
    }
}

/// Reads `pg_restore -l` lines: `<id>; <tableoid> <oid> <desc> <schema> <name> <owner>`,
/// where desc may hold spaces (`TABLE DATA`), and schema, name and owner too ([`split_entry`]
/// resolves them against `c`'s schemas and roles).
fn held(toc: &[&str], c: &Catalog) -> Result<Held> {
    let mut h = Held::default();
    h.schemas.insert("public".to_string());
    let entries: Vec<&str> = toc
        .iter()
        .filter_map(|line| {
            let (_, rest) = line.split_once("; ")?;
            let mut words = rest.splitn(3, ' ');
            words.next()?;
            words.next()?;
            words.next()
        })
        .collect();
    for entry in &entries {
        if let Some(rest) = entry.strip_prefix("SCHEMA - ") {
            let (schema, _owner) = schema_and_owner(rest, &c.roles)?;
            h.schemas.insert(schema);
        }
    }
    for entry in entries {
        if NOT_DEFINITIONS.iter().any(|d| entry.starts_with(d)) {
            continue;
        }
        let Some((desc, after)) = RELATIONS
            .iter()
            .chain(TYPES)
            .find_map(|d| Some((*d, entry.strip_prefix(d)?.strip_prefix(' ')?)))
        else {
            continue;
        };
        if after.starts_with("- ") {
            continue;
        }
        let known = |a: &str| h.schemas.contains(a) || c.schemas.contains(a);
        let (schema, name) = split_entry(after, &known, &c.roles)?;
        let key = (schema.to_string(), name.to_string());
        if TYPES.contains(&desc) {
            h.types.insert(key);
        } else {
            h.relations.insert(key);
        }
    }
    Ok(h)
}

/// `<schema> <owner>` of a SCHEMA entry: one space, or the only split whose owner is a role.
fn schema_and_owner(rest: &str, roles: &BTreeSet<String>) -> Result<(String, String)> {
    let found: Vec<(&str, &str)> = rest
        .match_indices(' ')
        .map(|(i, _)| (&rest[..i], &rest[i + 1..]))
        .filter(|(_, owner)| rest.matches(' ').count() == 1 || roles.contains(*owner))
        .collect();
    match found[..] {
        [(schema, owner)] => Ok((schema.to_string(), owner.to_string())),
        _ => Err(Error::failed(format!(
            "cannot tell schema and owner apart in the backup's entry \"SCHEMA - {rest}\"; nothing was changed"
        ))),
    }
}

/// The database's objects in the dump's schemas that it lacks; relations first, then types.
fn extras(h: &Held, c: &Catalog) -> Vec<Extra> {
    let mut out: Vec<Extra> = c
        .objects
        .iter()
        .filter_map(|(kind, schema, name)| {
            let e = Extra {
                kind: kind.clone(),
                schema: schema.clone(),
                name: name.clone(),
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
const GUARD: &str = "DO {tag} DECLARE bad pg_catalog.text; BEGIN
WITH RECURSIVE extra(classid, objid) AS (VALUES {extras}),
held(kind, nspname, name) AS (VALUES ('', '', ''){held}),
dep(classid, objid, objsubid, deptype) AS (
 SELECT d.classid, d.objid, d.objsubid, d.deptype FROM pg_catalog.pg_depend d JOIN extra e ON d.refclassid = e.classid AND d.refobjid = e.objid
 UNION SELECT d.classid, d.objid, d.objsubid, d.deptype FROM pg_catalog.pg_depend d JOIN dep p ON d.refclassid = p.classid AND d.refobjid = p.objid AND (p.objsubid = 0 OR d.refobjsubid = p.objsubid)),
owner AS (SELECT p.classid, p.objid, p.objsubid,
 CASE p.classid WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN coalesce((SELECT i.indrelid FROM pg_catalog.pg_index i WHERE i.indexrelid = p.objid), p.objid)
  WHEN 'pg_catalog.pg_rewrite'::pg_catalog.regclass THEN (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = p.objid)
  WHEN 'pg_catalog.pg_attrdef'::pg_catalog.regclass THEN (SELECT a.adrelid FROM pg_catalog.pg_attrdef a WHERE a.oid = p.objid)
  WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN (SELECT g.tgrelid FROM pg_catalog.pg_trigger g WHERE g.oid = p.objid)
  WHEN 'pg_catalog.pg_policy'::pg_catalog.regclass THEN (SELECT o.polrelid FROM pg_catalog.pg_policy o WHERE o.oid = p.objid)
  WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN (SELECT nullif(c.conrelid, 0) FROM pg_catalog.pg_constraint c WHERE c.oid = p.objid)
  WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN (SELECT nullif(t.typrelid, 0) FROM pg_catalog.pg_type t WHERE t.oid = p.objid) END AS rel,
 CASE p.classid WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN (SELECT CASE WHEN t.typrelid <> 0 THEN NULL WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END FROM pg_catalog.pg_type t WHERE t.oid = p.objid)
  WHEN 'pg_catalog.pg_constraint'::pg_catalog.regclass THEN (SELECT nullif(c.contypid, 0) FROM pg_catalog.pg_constraint c WHERE c.oid = p.objid) END AS typ
 FROM dep p WHERE p.deptype = 'n')
SELECT pg_catalog.string_agg(DISTINCT CASE WHEN x.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND x.rel IS NOT NULL \
 THEN pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, x.rel, 0) ELSE pg_catalog.pg_describe_object(x.classid, x.objid, x.objsubid) END, ', ') INTO bad FROM owner x
WHERE NOT EXISTS (SELECT 1 FROM extra e WHERE (e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND e.objid = x.rel) OR (e.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND e.objid = x.typ))
AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN held h ON h.kind = 'r' AND h.nspname = n.nspname AND h.name = c.relname WHERE c.oid = x.rel)
AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace JOIN held h ON h.kind = 't' AND h.nspname = n.nspname AND h.name = t.typname WHERE t.oid = x.typ);
IF bad IS NOT NULL THEN RAISE EXCEPTION 'tj-deploy: dropping what the backup does not hold would also drop %, which the backup does not hold either; nothing was changed', bad; END IF;
END {tag};";

/// [`GUARD`] for `extra` against what the dump holds; empty when nothing is dropped. Its
/// dollar quote is a tag that no name in it holds.
fn guard_sql(extra: &[Extra], h: &Held) -> String {
    if extra.is_empty() {
        return String::new();
    }
    let extras: Vec<String> = extra
        .iter()
        .map(|e| {
            let name = sql_literal(&format!("{}.{}", sql_ident(&e.schema), sql_ident(&e.name)));
            if e.is_type() {
                format!("('pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, pg_catalog.to_regtype({name})::pg_catalog.oid)")
            } else {
                format!("('pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, pg_catalog.to_regclass({name})::pg_catalog.oid)")
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
    let extras = extras.join(", ");
    let untagged = fill(GUARD, &[("{extras}", &extras), ("{held}", &held), ("{tag}", "")]);
    let tag = (0..)
        .map(|n| if n == 0 { "$tj$".to_string() } else { format!("$tj{n}$") })
        .find(|t| !untagged.contains(t.as_str()))
        .unwrap_or_default();
    fill(GUARD, &[("{extras}", &extras), ("{held}", &held), ("{tag}", &tag)])
}

/// `template` with each key replaced by its value in one pass: a value is never searched
/// for keys (a name holding `{held}` stays a name).
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some((at, key, value)) = vars
        .iter()
        .filter_map(|(k, v)| Some((rest.find(k)?, *k, *v)))
        .min_by_key(|(at, _, _)| *at)
    {
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &rest[at + key.len()..];
    }
    out.push_str(rest);
    out
}

/// A name with a newline cannot be matched: `pg_restore -l` shows it with a space, so a
/// table the backup holds would look like one it lacks, and be dropped.
fn refuse_newlines(extra: &[Extra]) -> Result<()> {
    match extra.iter().find(|e| e.schema.contains('\n') || e.name.contains('\n')) {
        Some(e) => Err(Error::refused(format!(
            "cannot restore the database: {} {:?}.{:?} has a newline in its name, which the backup's \
             table of contents cannot show, so whether the backup holds it is unknown; rename it first; nothing was changed",
            e.kind, e.schema, e.name
        ))),
        None => Ok(()),
    }
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
    // Every toc line starts with "toc ": a line "catalog" can only be the marker.
    let (toc, catalog) = match out.stdout.split_once("\ncatalog\n") {
        Some((toc, catalog)) => (toc, catalog),
        None => (
            "",
            out.stdout
                .strip_prefix("catalog\n")
                .ok_or_else(|| Error::failed(format!("{what} failed: unexpected answer from the host")))?,
        ),
    };
    let toc: Vec<&str> = toc.lines().filter_map(|l| l.strip_prefix("toc ")).collect();
    let catalog = Catalog::parse(catalog)?;
    let held = held(&toc, &catalog)?;
    let extra = extras(&held, &catalog);
    refuse_newlines(&extra)?;
    let mut drops: Vec<String> = vec![guard_sql(&extra, &held)];
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

    /// psql's NUL-separated answer: the objects, then the schemas and roles.
    fn catalog(rows: &[(&str, &str, &str)], schemas: &[&str], roles: &[&str]) -> Catalog {
        let mut fields: Vec<String> = Vec::new();
        for (k, s, n) in rows {
            fields.extend([k.to_string(), s.to_string(), n.to_string()]);
        }
        for s in schemas {
            fields.extend(["schema".to_string(), s.to_string(), String::new()]);
        }
        for r in roles {
            fields.extend(["role".to_string(), r.to_string(), String::new()]);
        }
        Catalog::parse(&format!("{}\0\n", fields.join("\0"))).unwrap()
    }

    fn base() -> Catalog {
        catalog(&[], &["public", "app"], &["tj"])
    }

    #[test]
    fn what_the_dump_lacks_in_its_schemas_is_dropped() {
        let toc: Vec<&str> = TOC.lines().collect();
        let c = catalog(
            &[
                ("table", "public", "trades"),
                ("sequence", "public", "trades_id_seq"),
                ("view", "public", "open_trades"),
                ("type", "public", "Role"),
                ("table", "app", "my table"),
                ("type", "public", "Status"),
                ("table", "public", "audit \"log\"\twith a tab"),
                ("view", "app", "recent"),
                // A schema the dump does not hold is not ours to clean.
                ("table", "other", "kept"),
            ],
            &["public", "app", "other"],
            &["tj"],
        );
        let h = held(&toc, &c).unwrap();
        assert!(h.relations.contains(&("app".into(), "my table".into())));
        assert!(h.types.contains(&("public".into(), "Role".into())));
        let e = extras(&h, &c);
        let described: Vec<String> = e.iter().map(Extra::describe).collect();
        assert_eq!(
            described,
            [
                "view app.recent",
                "table public.audit \"log\"\twith a tab",
                "type public.Status"
            ]
        );
        assert_eq!(
            e[1].drop_sql(),
            "DROP TABLE IF EXISTS \"public\".\"audit \"\"log\"\"\twith a tab\" CASCADE;"
        );
        assert_eq!(e[0].drop_sql(), "DROP VIEW IF EXISTS \"app\".\"recent\" CASCADE;");
    }

    #[test]
    fn schemas_and_owners_with_spaces_are_read_against_the_catalog() {
        let toc = [
            "1; 2615 1 SCHEMA - my schema app user",
            "2; 1259 2 TABLE my schema trades app user",
            "3; 1259 3 TABLE my schema my table app user",
            "4; 1247 4 TYPE public Kind tj",
        ];
        let c = catalog(
            &[
                ("table", "my schema", "trades"),
                ("table", "my schema", "my table"),
                ("table", "my schema", "later"),
            ],
            &["public", "my schema"],
            &["tj", "app user"],
        );
        let h = held(&toc, &c).unwrap();
        assert!(h.schemas.contains("my schema"), "{h:?}");
        assert!(h.relations.contains(&("my schema".into(), "trades".into())), "{h:?}");
        assert!(h.relations.contains(&("my schema".into(), "my table".into())), "{h:?}");
        let described: Vec<String> = extras(&h, &c).iter().map(Extra::describe).collect();
        assert_eq!(described, ["table my schema.later"]);
        // Two readings that both fit the catalog: refused, not guessed.
        let c = catalog(&[], &["a", "a b"], &["o", "c o"]);
        let e = held(&["1; 1259 2 TABLE a b c o"], &c).unwrap_err();
        assert!(
            e.message.contains("cannot tell schema, name and owner apart"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_catalog_is_read_in_threes() {
        assert!(Catalog::parse("").unwrap().objects.is_empty());
        assert!(Catalog::parse("table\0public\n").is_err());
        let c = Catalog::parse("table\0public\0a\nb\0role\0tj\0\0\n").unwrap();
        assert_eq!(c.objects, [("table".into(), "public".into(), "a\nb".into())]);
        assert!(c.roles.contains("tj"));
    }

    #[test]
    fn the_guard_names_the_extras_and_what_the_dump_holds_as_literals() {
        let toc: Vec<&str> = TOC.lines().collect();
        let h = held(&toc, &base()).unwrap();
        assert_eq!(guard_sql(&[], &h), "");
        let e = [Extra {
            kind: "type".into(),
            schema: "public".into(),
            name: "it's".into(),
        }];
        let sql = guard_sql(&e, &h);
        assert!(
            sql.contains("to_regtype('\"public\".\"it''s\"')::pg_catalog.oid"),
            "{sql}"
        );
        assert!(sql.contains(", ('r', 'app', 'my table')") && sql.contains(", ('t', 'public', 'Role')"));
        assert!(sql.starts_with("DO $tj$") && sql.ends_with("END $tj$;") && !sql.contains("{held}"));
        // Catalog names are qualified: the drops run before pg_restore sets its search path.
        assert!(
            !sql.contains(" pg_depend ") && !sql.contains("'pg_class'::regclass"),
            "{sql}"
        );
    }

    #[test]
    fn the_guards_dollar_tag_is_one_no_name_holds() {
        let h = held(&[], &base()).unwrap();
        let e = [Extra {
            kind: "table".into(),
            schema: "public".into(),
            name: "x$tj$y $tj1$ {held}".into(),
        }];
        let sql = guard_sql(&e, &h);
        assert!(sql.starts_with("DO $tj2$ ") && sql.ends_with("END $tj2$;"), "{sql}");
        // A name holding a placeholder is not filled in.
        assert!(sql.contains("\"x$tj$y $tj1$ {held}\"')"), "{sql}");
    }

    #[test]
    fn a_name_with_a_newline_is_refused_not_dropped() {
        let toc = ["1; 1259 2 TABLE public a b tj"];
        let c = catalog(&[("table", "public", "a\nb")], &["public"], &["tj"]);
        let e = extras(&held(&toc, &c).unwrap(), &c);
        let err = refuse_newlines(&e).unwrap_err();
        assert!(
            err.message.contains("table \"public\".\"a\\nb\" has a newline"),
            "{}",
            err.message
        );
        assert!(refuse_newlines(&extras(&held(&[], &base()).unwrap(), &base())).is_ok());
    }

    #[test]
    fn an_empty_dump_still_covers_public() {
        let c = catalog(&[("table", "public", "later")], &["public"], &["tj"]);
        assert_eq!(extras(&held(&[], &c).unwrap(), &c).len(), 1);
    }
}
