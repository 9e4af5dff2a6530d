//! Validated value types: every string that comes from a user, a file or a server and later
//! reaches a path, a remote shell or a URL is parsed into one of these first, once.

use std::fmt;
use std::time::Duration;

use chrono::NaiveDateTime;

use crate::error::{Error, Result};

/// Longest value we accept for names and ids; far above any real one, far below abuse.
const MAX_NAME: usize = 64;

fn describe(value: &str) -> String {
    // Quote bad input in messages, shortened and with control characters made visible.
    let mut shown: String = value.chars().take(80).flat_map(char::escape_debug).collect();
    if value.chars().count() > 80 {
        shown.push('…');
    }
    format!("\"{shown}\"")
}

/// An environment name such as `staging`: lowercase letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvName(String);

impl EnvName {
    pub fn parse(input: &str, s: &str) -> Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAME
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(EnvName(s.to_string()))
        } else {
            Err(Error::invalid(format!(
                "{input}: {} is not an environment name (lowercase letters, digits, '-' and '_', at most {MAX_NAME})",
                describe(s)
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A deploy target `user@host[:port]`; IPv6 literals go in brackets: `deploy@[::1]:2222`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl HostSpec {
    pub fn parse(input: &str, s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("{input}: {} is not a host ({why})", describe(s)));
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > 255 {
            return Err(bad("longer than 255 characters"));
        }
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, s),
        };
        if let Some(u) = user {
            let valid = !u.is_empty()
                && !u.starts_with('-')
                && u.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !valid {
                return Err(bad(
                    "the user may hold letters, digits, '.', '_' and '-' and must not start with '-'",
                ));
            }
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
                return Err(bad("not an IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("expected ':port' after ']'"))?),
            };
            (addr.to_string(), port)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        if !rest.starts_with('[') {
            let valid = !host.is_empty()
                && !host.starts_with('-')
                && !host.starts_with('.')
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
            if !valid {
                return Err(bad(
                    "the host name may hold letters, digits, '.', '-' and '_' and must not start with '-'",
                ));
            }
        }
        let port = match port {
            None => None,
            Some(p) => {
                let n: u32 = p
                    .parse()
                    .ok()
                    .filter(|_| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| bad("the port must be a number"))?;
                if !(1..=65535).contains(&n) {
                    return Err(bad("the port must be between 1 and 65535"));
                }
                Some(n as u16)
            }
        };
        Ok(HostSpec {
            user: user.map(str::to_string),
            host,
            port,
        })
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// A full git commit id (40 hex digits for SHA-1 repositories, 64 for SHA-256 ones), lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha(String);

impl Sha {
    pub fn parse(input: &str, s: &str) -> Result<Self> {
        let t = s.trim();
        if (t.len() == 40 || t.len() == 64) && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Sha(t.to_ascii_lowercase()))
        } else {
            Err(Error::invalid(format!(
                "{input}: {} is not a full commit sha (40 hex digits)",
                describe(s)
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl fmt::Display for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A release or backup id: the UTC start time of a run, `YYYYMMDD_HHMMSS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReleaseId(NaiveDateTime);

pub const RELEASE_ID_FORMAT: &str = "%Y%m%d_%H%M%S";

impl ReleaseId {
    pub fn parse(input: &str, s: &str) -> Result<Self> {
        Self::from_name(s).ok_or_else(|| {
            Error::invalid(format!(
                "{input}: {} is not a backup id (expected YYYYMMDD_HHMMSS, e.g. 20260118_143000)",
                describe(s)
            ))
        })
    }
    /// Parses a directory name read from a host; anything else there is not ours.
    pub fn from_name(s: &str) -> Option<Self> {
        if s.len() != 15
            || !s
                .bytes()
                .enumerate()
                .all(|(i, b)| if i == 8 { b == b'_' } else { b.is_ascii_digit() })
        {
            return None;
        }
        NaiveDateTime::parse_from_str(s, RELEASE_ID_FORMAT).ok().map(ReleaseId)
    }
    pub fn from_time(t: chrono::DateTime<chrono::Utc>) -> Self {
        use chrono::Timelike;
        let naive = t.naive_utc();
        ReleaseId(naive.with_nanosecond(0).unwrap_or(naive))
    }
    /// The next id, one second later: used when an id is already taken on a host.
    pub fn next(self) -> Self {
        ReleaseId(self.0 + chrono::TimeDelta::seconds(1))
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(RELEASE_ID_FORMAT))
    }
}

/// An absolute path on a host, normalised, without `..`, control characters or a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePath(String);

impl RemotePath {
    pub fn parse(input: &str, s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("{input}: {} is not a usable remote path ({why})", describe(s)));
        if !s.starts_with('/') {
            return Err(bad("it must be absolute"));
        }
        if s.len() > 1024 {
            return Err(bad("longer than 1024 bytes"));
        }
        if s.chars().any(char::is_control) {
            return Err(bad("it holds a control character"));
        }
        let parts: Vec<&str> = s.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        if parts.contains(&"..") {
            return Err(bad("it holds '..'"));
        }
        if parts.is_empty() {
            return Err(bad("it is the root directory"));
        }
        Ok(RemotePath(format!("/{}", parts.join("/"))))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn join(&self, rel: &str) -> String {
        format!("{}/{}", self.0, rel)
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path relative to a release, e.g. a linked file `.env` or `config/app.json`.
pub fn relative_path(input: &str, s: &str) -> Result<String> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "{input}: {} is not a usable relative path ({why})",
            describe(s)
        ))
    };
    if s.is_empty() || s.starts_with('/') {
        return Err(bad("it must be relative and not empty"));
    }
    if s.chars().any(char::is_control) {
        return Err(bad("it holds a control character"));
    }
    let parts: Vec<&str> = s.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err(bad("it must name a file inside the release, without '..'"));
    }
    Ok(parts.join("/"))
}

/// Parses `500ms`, `30s`, `2m`, `1h` (or a bare number of seconds).
pub fn duration(input: &str, s: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(format!(
            "{input}: {} is not a duration (e.g. \"60s\", \"2m\", \"500ms\")",
            describe(s)
        ))
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d.is_zero() || d > Duration::from_secs(24 * 3600) {
        return Err(Error::invalid(format!(
            "{input}: {} must be more than 0 and at most 24h",
            describe(s)
        )));
    }
    Ok(d)
}

/// One smoke check: `GET /api/me 401`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokeCheck {
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl SmokeCheck {
    pub fn parse(input: &str, s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "{input}: {} is not a smoke check like \"GET /api/me 401\" ({why})",
                describe(s)
            ))
        };
        let parts: Vec<&str> = s.split_whitespace().collect();
        let [method, path, status] = parts.as_slice() else {
            return Err(bad("expected METHOD path status"));
        };
        const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
        if !METHODS.contains(method) {
            return Err(bad("unknown method"));
        }
        if !path.starts_with('/') || path.chars().any(char::is_control) {
            return Err(bad("the path must start with '/'"));
        }
        let status: u16 = status
            .parse()
            .ok()
            .filter(|n| (100..=599).contains(n))
            .ok_or_else(|| bad("the status must be 100-599"))?;
        Ok(SmokeCheck {
            method: method.to_string(),
            path: path.to_string(),
            status,
        })
    }
}

impl fmt::Display for SmokeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.method, self.path, self.status)
    }
}

/// An http(s) URL; `{host}` in it stands for each deploy host's name.
pub fn http_url(input: &str, s: &str) -> Result<String> {
    let bad = |why: &str| Error::invalid(format!("{input}: {} is not a usable URL ({why})", describe(s)));
    let probe = s.replace("{host}", "example.invalid");
    let url = reqwest::Url::parse(&probe).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_and_refuse_injection() {
        let h = HostSpec::parse("hosts", "deploy@127.0.0.1:2222").unwrap();
        assert_eq!(
            (h.user.as_deref(), h.host.as_str(), h.port),
            (Some("deploy"), "127.0.0.1", Some(2222))
        );
        let v6 = HostSpec::parse("hosts", "deploy@[::1]:22").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "deploy@[::1]:22");
        for bad in [
            "",
            "-oProxyCommand=touch /tmp/pwned",
            "deploy@-oProxyCommand=x",
            "a@b:0",
            "a@b:70000",
            "a@b:x",
            "a@b:",
            "a b",
            "a@b;c",
            "@b",
            "a@[::1",
        ] {
            let e = HostSpec::parse("hosts", bad).unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Invalid, "{bad}");
            assert!(e.message.starts_with("hosts:"), "{}", e.message);
        }
    }

    #[test]
    fn release_ids_are_strict() {
        assert_eq!(
            ReleaseId::parse("to", "20260118_143000").unwrap().to_string(),
            "20260118_143000"
        );
        for bad in [
            "",
            "../../etc",
            "20260118_143000; rm -rf /",
            "20261318_143000",
            "2026011_1430000",
            "20260118-143000",
            "20260118_143000\n",
        ] {
            assert!(ReleaseId::parse("to", bad).is_err(), "{bad:?}");
        }
        let id = ReleaseId::parse("to", "20261231_235959").unwrap();
        assert_eq!(id.next().to_string(), "20270101_000000");
    }

    #[test]
    fn remote_paths_are_normalised_and_confined() {
        assert_eq!(
            RemotePath::parse("p", "/var//www/./app/").unwrap().as_str(),
            "/var/www/app"
        );
        for bad in ["relative", "/", "/a/../b", "/a\nb", ""] {
            assert!(RemotePath::parse("p", bad).is_err(), "{bad:?}");
        }
        assert_eq!(relative_path("f", "./config//app.json").unwrap(), "config/app.json");
        assert!(relative_path("f", "../x").is_err());
    }

    #[test]
    fn durations_smoke_checks_and_urls() {
        assert_eq!(duration("d", "60s").unwrap(), Duration::from_secs(60));
        assert_eq!(duration("d", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("d", "250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "0s", "5 parsecs", "-1s", "1.5s", "25h"] {
            assert!(duration("d", bad).is_err(), "{bad:?}");
        }
        let s = SmokeCheck::parse("smoke", "GET /api/me 401").unwrap();
        assert_eq!((s.method.as_str(), s.path.as_str(), s.status), ("GET", "/api/me", 401));
        assert!(SmokeCheck::parse("smoke", "FETCH /x 200").is_err());
        assert!(SmokeCheck::parse("smoke", "GET x 200").is_err());
        assert!(SmokeCheck::parse("smoke", "GET /x 999").is_err());
        assert!(http_url("health_url", "https://{host}:3000/api/health").is_ok());
        assert!(http_url("health_url", "file:///etc/passwd").is_err());
        assert!(http_url("health_url", "ftp://x/y").is_err());
    }

    #[test]
    fn env_names_and_shas() {
        assert!(EnvName::parse("environment", "staging").is_ok());
        for bad in ["", "Prod", "../x", "a;b", "a b", "$(x)"] {
            assert!(EnvName::parse("environment", bad).is_err(), "{bad:?}");
        }
        let sha = Sha::parse("sha", &"A".repeat(40)).unwrap();
        assert_eq!(sha.as_str(), "a".repeat(40));
        assert!(Sha::parse("sha", "abc123").is_err());
    }
}
