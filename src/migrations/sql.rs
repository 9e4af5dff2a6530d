//! A small SQL tokenizer and the rules that flag destructive statements. Comments, string
//! literals, dollar-quoted bodies and quoted identifiers are never read as statements.
//!
//! Flagged: `DROP TABLE`, `DROP SCHEMA`, `TRUNCATE`, `ALTER TABLE … DROP [COLUMN]`,
//! `ALTER TABLE … ALTER [COLUMN] … [SET DATA] TYPE`, `ALTER TABLE … RENAME` (table or column,
//! not a constraint), `SET NOT NULL`, `ADD [COLUMN] … NOT NULL` without `DEFAULT` (nor an
//! identity/serial column), and `DELETE` / `UPDATE` without a top-level `WHERE`.
//! Deliberately not flagged: `DROP INDEX [CONCURRENTLY]` — it loses no data and the running
//! release keeps working (only slower); the `CONCURRENTLY` form also takes no blocking lock.

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
    let mut out: Vec<Token> = Vec::new();
    let newlines = |from: usize, to: usize| b[from..to].iter().filter(|&&c| c == b'\n').count();
    while i < b.len() {
        let c = b[i];
        let (tok, end) = if let Some(end) = skip(b, i) {
            line += newlines(i, end);
            i = end;
            continue;
        } else if c == b'\'' || c == b'"' {
            // E'…' is the one string form where a backslash escapes the quote.
            let escapes =
                c == b'\'' && matches!(out.last(), Some(Token { tok: Tok::Word(w), end, .. }) if w == "E" && *end == i);
            if escapes {
                out.pop();
            }
            (Tok::Value, quoted_end(b, i, escapes))
        } else if let Some(end) = dollar_end(b, i) {
            (Tok::Value, end)
        } else if is_word_byte(c) {
            let end = b[i..]
                .iter()
                .position(|&c| !(is_word_byte(c) || c == b'$'))
                .map_or(b.len(), |p| i + p);
            let tok = if c.is_ascii_digit() {
                Tok::Value
            } else {
                Tok::Word(sql[i..end].to_ascii_uppercase())
            };
            (tok, end)
        } else if c == b';' {
            (Tok::Semi, i + 1)
        } else {
            (Tok::Sym(c), i + 1)
        };
        if tok == Tok::Sym(b')') {
            depth = depth.saturating_sub(1);
        }
        let opens = tok == Tok::Sym(b'(');
        out.push(Token {
            tok,
            line,
            start: i,
            end,
            depth,
        });
        depth += usize::from(opens);
        line += newlines(i, end);
        i = end;
    }
    out
}

fn is_word_byte(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric() || c >= 0x80
}

/// The end of the whitespace or comment at `i`, if there is one there.
fn skip(b: &[u8], i: usize) -> Option<usize> {
    let at = |i: usize, s: &[u8]| b.get(i..i + s.len()) == Some(s);
    if b[i].is_ascii_whitespace() {
        return Some(i + 1);
    }
    if at(i, b"--") {
        return Some(b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p));
    }
    if !at(i, b"/*") {
        return None;
    }
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
    Some(j.min(b.len()))
}

/// The end of the string or quoted identifier opening at `i` (a doubled quote stays inside).
fn quoted_end(b: &[u8], i: usize, escapes: bool) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() {
        if (escapes && b[j] == b'\\') || (b[j] == q && b.get(j + 1) == Some(&q)) {
            j += 2;
        } else if b[j] == q {
            return j + 1;
        } else {
            j += 1;
        }
    }
    b.len()
}

/// The end of the dollar-quoted body opening at `i` (`$$…$$`, `$tag$…$tag$`), if one opens there.
fn dollar_end(b: &[u8], i: usize) -> Option<usize> {
    if b[i] != b'$' {
        return None;
    }
    let tag_len = dollar_tag(&b[i..])?;
    let tag = &b[i..i + tag_len];
    let body = i + tag_len;
    Some(
        b[body..]
            .windows(tag_len)
            .position(|w| w == tag)
            .map_or(b.len(), |p| body + p + tag_len),
    )
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
}
