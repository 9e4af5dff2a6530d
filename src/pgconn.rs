//! Turns the app's `DATABASE_URL` (a Prisma-style `postgres://` / `postgresql://` URL) into what
//! libpq's tools (`pg_dump`, `pg_restore`, `psql`) accept: a keyword/value connection string
//! WITHOUT the password, safe on a command line, and a `.pgpass` line carrying the password
//! through a private `PGPASSFILE`. libpq refuses query parameters it does not know
//! (`invalid URI query parameter: "schema"`), so only libpq's own keywords are kept.

use crate::error::{Error, Result};

/// Connection keywords libpq accepts (PostgreSQL 17 `libpq-connect`, "Parameter Key Words").
/// `password` is handled apart; anything else in the query (Prisma's `schema`,
/// `connection_limit`, `pool_timeout`, `pgbouncer`, `socket_timeout`, `statement_cache_size`,
/// `sslaccept`, `sslidentity`, `max_connection_lifetime`, ...) is dropped.
const LIBPQ_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "requiressl",
    "sslcompression",
    "sslkey",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

/// Query parameters that only Prisma reads: dropped without a word.
const PRISMA_ONLY: &[&str] = &[
    "schema",
    "connection_limit",
    "pool_timeout",
    "pgbouncer",
    "socket_timeout",
    "statement_cache_size",
    "sslaccept",
    "sslidentity",
    // Prisma's `sslcert` is the server's CA (relative to prisma/) and its `sslpassword` unlocks
    // `sslidentity`: libpq reads the same names otherwise (a client certificate, a key's
    // password on the command line), so they are Prisma's only.
    "sslcert",
    "sslpassword",
    "max_connection_lifetime",
    "max_idle_connection_lifetime",
];

/// A parsed `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub struct PgConn {
    /// libpq keywords in URL order, password excluded.
    params: Vec<(String, String)>,
    password: Option<String>,
    /// Parameters dropped that are neither libpq's nor known Prisma ones, for a warning.
    pub dropped_unknown: Vec<String>,
    /// Prisma's `schema` parameter: where Prisma keeps its tables and `_prisma_migrations`.
    pub schema: Option<String>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("params", &self.params)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn percent_decode(what: &str, s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::invalid(format!("DATABASE_URL: invalid percent-encoding in the {what}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid(format!("DATABASE_URL: the {what} is not UTF-8 once decoded")))
}

/// Splits `host[:port]` (or `[v6]:port`) entries of a comma-separated host list.
fn hosts_and_ports(list: &str) -> Result<(Vec<String>, Vec<String>)> {
    let (mut hosts, mut ports) = (Vec::new(), Vec::new());
    for entry in list.split(',') {
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (h, after) = rest
                .split_once(']')
                .ok_or_else(|| Error::invalid("DATABASE_URL: unclosed [ in an IPv6 host"))?;
            (h.to_string(), after.strip_prefix(':').unwrap_or("").to_string())
        } else {
            match entry.rsplit_once(':') {
                Some((h, p)) => (percent_decode("host", h)?, p.to_string()),
                None => (percent_decode("host", entry)?, String::new()),
            }
        };
        if !port.is_empty() && !port.bytes().all(|c| c.is_ascii_digit()) {
            // Never quote the text: a password with an unencoded `/`, `#` or `@` lands here.
            return Err(Error::invalid(
                "DATABASE_URL: the port after the host's last ':' is not a number (is a password with /, # or @ percent-encoded, and the value quoted in .env?)",
            ));
        }
        hosts.push(host);
        ports.push(port);
    }
    Ok((hosts, ports))
}

impl PgConn {
    /// Parses a `postgres://` or `postgresql://` URL as libpq would, keeping what libpq knows.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or_else(|| Error::invalid("DATABASE_URL: must start with postgresql:// or postgres://"))?;
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = main.split_once('/').unwrap_or((main, ""));
        let (userinfo, hostlist) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut params: Vec<(String, String)> = Vec::new();
        let mut password = None;
        if let Some(u) = userinfo {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            if !user.is_empty() {
                params.push(("user".into(), percent_decode("user", user)?));
            }
            if let Some(p) = pass {
                password = Some(percent_decode("password", p)?);
            }
        }
        if !hostlist.is_empty() {
            let (hosts, ports) = hosts_and_ports(hostlist)?;
            if hosts.iter().any(|h| !h.is_empty()) {
                params.push(("host".into(), hosts.join(",")));
            }
            if ports.iter().any(|p| !p.is_empty()) {
                params.push(("port".into(), ports.join(",")));
            }
        }
        if !path.is_empty() {
            params.push(("dbname".into(), percent_decode("database name", path)?));
        }
        let mut dropped_unknown = Vec::new();
        let mut schema = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (percent_decode("query", k)?, percent_decode("query", v)?);
            match k.as_str() {
                "password" => password = Some(v),
                // libpq's own JDBC compatibility: ssl=true means sslmode=require.
                "ssl" if v == "true" => set(&mut params, "sslmode", "require".to_string()),
                k if LIBPQ_KEYWORDS.contains(&k) => set(&mut params, k, v),
                "schema" if !v.is_empty() => schema = Some(v),
                k if PRISMA_ONLY.contains(&k) => {}
                _ => dropped_unknown.push(k),
            }
        }
        if password.is_some() {
            // Our PGPASSFILE carries the URL's password; a `passfile` keyword would replace it.
            params.retain(|(k, _)| k != "passfile");
        }
        Ok(PgConn {
            params,
            password,
            dropped_unknown,
            schema,
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// A libpq keyword/value connection string without the password, for `-d`.
    pub fn conninfo(&self) -> String {
        let words: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| {
                let mut q = String::with_capacity(v.len() + 2);
                q.push('\'');
                for c in v.chars() {
                    if c == '\'' || c == '\\' {
                        q.push('\\');
                    }
                    q.push(c);
                }
                q.push('\'');
                format!("{k}={q}")
            })
            .collect();
        words.join(" ")
    }

    /// The one line of a private `.pgpass`, matching any host, port, database and user: the
    /// file exists for one step and one connection string, and exact fields would miss host
    /// lists, socket directories and `hostaddr`. Empty when there is no password.
    pub fn pgpass_line(&self) -> Result<String> {
        match &self.password {
            None => Ok(String::new()),
            Some(p) if p.contains(['\n', '\r', '\0']) => Err(Error::invalid(
                "DATABASE_URL: the password holds a line break, which a .pgpass file cannot carry",
            )),
            Some(p) => Ok(format!("*:*:*:*:{}", pgpass_escape(p))),
        }
    }
}

fn set(params: &mut Vec<(String, String)>, key: &str, value: String) {
    match params.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => params.push((key.to_string(), value)),
    }
}

/// `.pgpass` fields escape `:` and `\` with a backslash.
pub fn pgpass_escape(field: &str) -> String {
    field.replace('\\', "\\\\").replace(':', "\\:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prisma_schema_is_kept_apart() {
        let c = PgConn::parse("postgresql://u@h/db?schema=app&connection_limit=5").unwrap();
        assert_eq!(c.schema.as_deref(), Some("app"));
        assert_eq!(c.conninfo(), "user='u' host='h' dbname='db'");
        assert_eq!(PgConn::parse("postgres://h/db").unwrap().schema, None);
    }

    #[test]
    fn prisma_url_becomes_libpq() {
        let c = PgConn::parse("postgresql://u:p%40ss@db:5432/tj?schema=public&connection_limit=5").unwrap();
        assert_eq!(c.conninfo(), "user='u' host='db' port='5432' dbname='tj'");
        assert_eq!(c.password(), Some("p@ss"));
        assert_eq!(c.pgpass_line().unwrap(), "*:*:*:*:p@ss");
        assert!(c.dropped_unknown.is_empty());
        assert!(!format!("{c:?}").contains("p@ss"));
    }

    #[test]
    fn keeps_libpq_params_and_reports_unknown_ones() {
        let c = PgConn::parse(
            "postgres://app@h1:5433,[::1]:5434/my%20db?sslmode=require&pgbouncer=true&application_name=a%26b&frobnicate=1&connect_timeout=10",
        )
        .unwrap();
        assert_eq!(c.get("host"), Some("h1,::1"));
        assert_eq!(c.get("port"), Some("5433,5434"));
        assert_eq!(c.get("dbname"), Some("my db"));
        assert_eq!(c.get("sslmode"), Some("require"));
        assert_eq!(c.get("application_name"), Some("a&b"));
        assert_eq!(c.get("connect_timeout"), Some("10"));
        assert_eq!(c.get("pgbouncer"), None);
        let with_pw = PgConn::parse("postgresql://u:pw@h/db?passfile=/x").unwrap();
        assert_eq!(with_pw.get("passfile"), None);
        assert_eq!(
            PgConn::parse("postgresql://u@h/db?passfile=/x")
                .unwrap()
                .get("passfile"),
            Some("/x")
        );
        assert_eq!(c.dropped_unknown, vec!["frobnicate"]);
        assert_eq!(c.password(), None);
        assert_eq!(c.pgpass_line().unwrap(), "");
    }

    #[test]
    fn socket_hosts_quotes_and_escapes() {
        let c = PgConn::parse("postgresql://u:a%3Ab%5Cc'd@%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(c.get("host"), Some("/var/run/postgresql"));
        assert_eq!(c.pgpass_line().unwrap(), "*:*:*:*:a\\:b\\\\c'd");
        let c = PgConn::parse("postgresql:///db?host=/tmp&user=o'k").unwrap();
        assert_eq!(c.conninfo(), "dbname='db' host='/tmp' user='o\\'k'");
        assert!(PgConn::parse("mysql://x").is_err());
        assert!(PgConn::parse("postgresql://u:%zz@h/db").is_err());
        assert!(PgConn::parse("postgresql://h:port/db").is_err());
        assert!(
            PgConn::parse("postgresql://u:a%0Ab@h/db")
                .unwrap()
                .pgpass_line()
                .is_err()
        );
    }

    proptest::proptest! {
        /// Any password survives percent-encoding, never reaches the connection string, and
        /// reads back from its .pgpass line.
        #[test]
        fn password_roundtrip(pw in "[ -~]{1,30}", user in "[a-z][a-z0-9_]{0,10}") {
            let enc: String = pw.bytes().map(|b| format!("%{b:02X}")).collect();
            let c = PgConn::parse(&format!("postgresql://{user}:{enc}@db:5432/tj?schema=public")).unwrap();
            proptest::prop_assert_eq!(c.password(), Some(pw.as_str()));
            proptest::prop_assert!(!c.conninfo().contains("password"));
            let line = c.pgpass_line().unwrap();
            let field = line.strip_prefix("*:*:*:*:").unwrap();
            let mut back = String::new();
            let mut chars = field.chars();
            while let Some(ch) = chars.next() {
                back.push(if ch == '\\' { chars.next().unwrap() } else { ch });
            }
            proptest::prop_assert_eq!(back, pw);
        }
    }
}
