//! `shared/.env` read the way the app reads it: the syntax of the `dotenv` npm package (v16,
//! `lib/main.js`), never sourced as shell. Mirrors its one regular expression:
//!
//! ```text
//! ^\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?$
//! ```
//!
//! so `&`, `;`, `$` and spaces are literal, quoted values may span lines, `\n` / `\r` expand
//! only inside double quotes, and an unquoted value ends at the first `#` (as in dotenv, with
//! or without a space before it). The last assignment of a key wins.

/// The variables of a dotenv file, in file order, later duplicates replacing earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DotEnv {
    vars: Vec<(String, String)>,
}

impl DotEnv {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
    pub fn len(&self) -> usize {
        self.vars.len()
    }
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
    fn set(&mut self, key: String, value: String) {
        match self.vars.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((key, value)),
        }
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
}

/// JavaScript's `\s` for the characters a .env file holds.
fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// Parses `text` like `dotenv.parse`.
pub fn parse(text: &str) -> DotEnv {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let s: Vec<char> = text.chars().collect();
    let mut env = DotEnv::default();
    let mut line_start = 0;
    while line_start < s.len() {
        let next = match parse_at(&s, line_start) {
            Some((key, value, end)) => {
                env.set(key, value);
                end
            }
            None => line_start,
        };
        // The next match can only begin at the start of a line at or after `next`.
        line_start = match s[next..].iter().position(|c| *c == '\n') {
            Some(i) => next + i + 1,
            None => s.len(),
        };
    }
    env
}

/// Tries the expression at a line start; returns the key, the value and where the match ended.
fn parse_at(s: &[char], start: usize) -> Option<(String, String, usize)> {
    let mut i = start;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    // `(?:export\s+)?` is tried first; if the rest fails without it, `export` may be the key.
    if s[i..].starts_with(&['e', 'x', 'p', 'o', 'r', 't']) {
        let mut j = i + 6;
        if j < s.len() && is_space(s[j]) {
            while j < s.len() && is_space(s[j]) {
                j += 1;
            }
            if let Some(found) = after_prefix(s, j) {
                return Some(found);
            }
        }
    }
    after_prefix(s, i)
}

fn after_prefix(s: &[char], i: usize) -> Option<(String, String, usize)> {
    let key_end = i + s[i..].iter().take_while(|c| is_key_char(**c)).count();
    if key_end == i {
        return None;
    }
    let key: String = s[i..key_end].iter().collect();
    // Separator `\s*=\s*?` (the lazy part is left to the value) or `:\s+?`.
    let mut j = key_end;
    while j < s.len() && is_space(s[j]) {
        j += 1;
    }
    let value_start = if j < s.len() && s[j] == '=' {
        j + 1
    } else if key_end < s.len() && s[key_end] == ':' && key_end + 1 < s.len() && is_space(s[key_end + 1]) {
        key_end + 2
    } else {
        return None;
    };
    let (raw, end) = value_at(s, value_start)?;
    Some((key, finish_value(&raw), end))
}

/// The value alternatives in the expression's order, each followed by the `\s*(?:#.*)?$` tail.
fn value_at(s: &[char], i: usize) -> Option<(String, usize)> {
    let mut q = i;
    while q < s.len() && is_space(s[q]) {
        q += 1;
    }
    if q < s.len() && matches!(s[q], '\'' | '"' | '`') {
        let quote = s[q];
        // Closing candidates: every quote up to the first unescaped one, longest first.
        let mut candidates = Vec::new();
        let mut k = q + 1;
        while k < s.len() {
            if s[k] == '\\' && k + 1 < s.len() && s[k + 1] == quote {
                candidates.push(k + 1);
                k += 2;
                continue;
            }
            if s[k] == quote {
                candidates.push(k);
                break;
            }
            k += 1;
        }
        for close in candidates.into_iter().rev() {
            if let Some(end) = tail(s, close + 1) {
                return Some((s[q..=close].iter().collect(), end));
            }
        }
    }
    // `[^#\r\n]+`
    let run = s[i..].iter().take_while(|c| **c != '#' && **c != '\n').count();
    if run > 0 {
        let end = tail(s, i + run)?;
        return Some((s[i..i + run].iter().collect(), end));
    }
    // No value at all.
    tail(s, i).map(|end| (String::new(), end))
}

/// `\s*(?:#.*)?$`: the rest of the line is blank or a comment. Returns the end of the line.
fn tail(s: &[char], mut i: usize) -> Option<usize> {
    while i < s.len() && s[i] != '\n' && is_space(s[i]) {
        i += 1;
    }
    if i < s.len() && s[i] == '#' {
        while i < s.len() && s[i] != '\n' {
            i += 1;
        }
    }
    (i == s.len() || s[i] == '\n').then_some(i)
}

/// Trim, strip one pair of matching quotes, expand `\n` and `\r` after a double quote.
fn finish_value(raw: &str) -> String {
    let v = raw.trim_matches(is_space);
    let first = v.chars().next();
    let mut out = match first {
        Some(q @ ('\'' | '"' | '`')) if v.len() >= 2 && v.ends_with(q) => v[1..v.len() - 1].to_string(),
        _ => v.to_string(),
    };
    if first == Some('"') {
        out = out.replace("\\n", "\n").replace("\\r", "\r");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str, key: &str) -> Option<String> {
        parse(text).get(key).map(str::to_string)
    }

    #[test]
    fn plain_export_and_separators() {
        let e = parse("A=1\nexport B=two words  \n  C = spaced\nD: colon\nexport=x\nE=\n");
        assert_eq!(e.get("A"), Some("1"));
        assert_eq!(e.get("B"), Some("two words"));
        assert_eq!(e.get("C"), Some("spaced"));
        assert_eq!(e.get("D"), Some("colon"));
        assert_eq!(e.get("export"), Some("x"));
        assert_eq!(e.get("E"), Some(""));
        assert_eq!(e.len(), 6);
    }

    #[test]
    fn shell_characters_are_literal() {
        let url = "postgresql://u:p%40ss@db:5432/tj?schema=public&connection_limit=5";
        assert_eq!(
            one(&format!("DATABASE_URL={url}\n"), "DATABASE_URL").as_deref(),
            Some(url)
        );
        assert_eq!(
            one("X=a;b|c $HOME `id` $(x)\n", "X").as_deref(),
            Some("a;b|c $HOME `id` $(x)")
        );
        assert_eq!(one("X=${Y}\n", "X").as_deref(), Some("${Y}"));
    }

    #[test]
    fn quotes() {
        assert_eq!(one("X='a # b'\n", "X").as_deref(), Some("a # b"));
        assert_eq!(one("X=\"a # b\" # c\n", "X").as_deref(), Some("a # b"));
        assert_eq!(one("X=`a 'b' \"c\"`\n", "X").as_deref(), Some("a 'b' \"c\""));
        assert_eq!(one("X='line\\nbreak'\n", "X").as_deref(), Some("line\\nbreak"));
        assert_eq!(one("X=\"line\\nbreak\"\n", "X").as_deref(), Some("line\nbreak"));
        assert_eq!(one("X=\"multi\nline\"\nY=2\n", "X").as_deref(), Some("multi\nline"));
        assert_eq!(one("X=\"multi\nline\"\nY=2\n", "Y").as_deref(), Some("2"));
        assert_eq!(one("X='it\\'s'\n", "X").as_deref(), Some("it\\'s"));
        // Text after the closing quote: not a quoted value; the whole rest up to `#` is kept.
        assert_eq!(one("X=\"a\" b\n", "X").as_deref(), Some("\"a\" b"));
        assert_eq!(one("X=\"unclosed\nY=1\n", "X").as_deref(), Some("\"unclosed"));
        assert_eq!(one("X=\"unclosed\nY=1\n", "Y").as_deref(), Some("1"));
    }

    #[test]
    fn comments_and_noise() {
        let e = parse("# comment\n\n  # indented\nA=1 # trailing\nB=x#y\nnot a line\nC=3\r\nD=4\r");
        assert_eq!(e.get("A"), Some("1"));
        assert_eq!(e.get("B"), Some("x"), "dotenv ends an unquoted value at any #");
        assert_eq!(e.get("C"), Some("3"));
        assert_eq!(e.get("D"), Some("4"));
        assert_eq!(e.len(), 4);
    }

    #[test]
    fn last_assignment_wins() {
        assert_eq!(one("A=1\nA=2\n", "A").as_deref(), Some("2"));
    }

    proptest::proptest! {
        /// Any value without quotes, `#` or line breaks round-trips unquoted; any value without
        /// a single quote round-trips single-quoted.
        #[test]
        fn roundtrip(v in "[a-zA-Z0-9&;$%@:/?=. _+*!-]{0,40}", w in "[ -&(-~\n]{0,40}") {
            let text = format!("K={v}\nexport S='{w}'\n");
            let e = parse(&text);
            proptest::prop_assert_eq!(e.get("K"), Some(v.trim()));
            proptest::prop_assert_eq!(e.get("S"), Some(w.as_str()));
        }
    }
}
