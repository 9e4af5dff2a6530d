//! Verification after a switch: poll the health URL until it answers 200 with
//! `status == "healthy"` (and, when the app reports one, the expected `revision`, so the old
//! code still answering never passes), then run each smoke check once.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{EnvConfig, HostSpec, SmokeCheck};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub ok: bool,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub url: String,
    pub attempts: u32,
    pub waited_ms: u64,
    pub checks: Vec<CheckResult>,
    /// The answer carried `revision` and it matched; otherwise the workers must be checked
    /// another way (where they run from), since the old code could be answering.
    pub revision_checked: bool,
    /// Said in every summary: PM2 workers that restarted during verification (crash loop?).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("tj-deploy/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::failed(format!("http client: {e}")))
}

/// `health_url` for one host; an IPv6 address is bracketed, as a URL needs it.
pub fn url_for(template: &str, host: &HostSpec) -> String {
    if host.host.contains(':') {
        template.replace("{host}", &format!("[{}]", host.host))
    } else {
        template.replace("{host}", &host.host)
    }
}

/// The environment's URL for reports: the origin of the health URL, on the first host when the
/// URL is per host (`{host}`), so no placeholder reaches GitHub or the summary.
pub fn environment_url(template: &str, hosts: &[HostSpec]) -> Option<String> {
    let url = match hosts.first() {
        Some(h) => url_for(template, h),
        None if template.contains("{host}") => return None,
        None => template.to_string(),
    };
    reqwest::Url::parse(&url).ok().map(|u| u.origin().ascii_serialization())
}

/// What one health answer said, and whether it passes; `Ok(true)` when it carried the
/// expected revision.
pub(crate) fn judge(status: u16, body: &[u8], expect_revision: &str) -> std::result::Result<bool, String> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let health = field("status");
    if status != 200 {
        return Err(format!(
            "HTTP {status}{}",
            health.map(|h| format!(", status {h:?}")).unwrap_or_default()
        ));
    }
    match health.as_deref() {
        Some("healthy") => {}
        Some(other) => return Err(format!("status {other:?}, expected \"healthy\"")),
        None => return Err("no JSON field \"status\" in the answer".to_string()),
    }
    match field("revision") {
        Some(rev) if !rev.eq_ignore_ascii_case(expect_revision) => Err(format!(
            "revision {} answered, expected {}",
            crate::ui::prefix(&rev, 12),
            crate::ui::prefix(expect_revision, 12)
        )),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

/// Polls until healthy or `health_timeout`; then the smoke checks.
pub async fn verify(
    http: &reqwest::Client,
    env: &EnvConfig,
    host: &HostSpec,
    expect_revision: &str,
) -> Result<Verification> {
    let timeout = env.health_request_timeout;
    let get = async |url: &str| {
        let t0 = Instant::now();
        match http.get(url).timeout(timeout).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(body) => Ok((status, body.to_vec(), t0.elapsed().as_millis() as u64)),
                    Err(e) => Err(format!("reading the answer: {e}")),
                }
            }
            Err(e) => Err(describe_http_error(&e)),
        }
    };
    let smoke = async |base: &reqwest::Url, smoke: &SmokeCheck| smoke_check(http, base, smoke, timeout).await;
    poll_then_smoke(env, url_for(&env.health_url, host), expect_revision, None, get, smoke).await
}

/// The one verification loop, whether its requests leave the runner or a host (`on_host`
/// names that host in check names and errors): `get` asks the health URL once (status, body,
/// latency, or why no answer came) until it is healthy with `expect_revision` or
/// `health_timeout` passes; then `smoke` sends each smoke check against the health URL.
pub(crate) async fn poll_then_smoke(
    env: &EnvConfig,
    url: String,
    expect_revision: &str,
    on_host: Option<&str>,
    get: impl AsyncFn(&str) -> std::result::Result<(u16, Vec<u8>, u64), String>,
    smoke: impl AsyncFn(&reqwest::Url, &SmokeCheck) -> CheckResult,
) -> Result<Verification> {
    let started = Instant::now();
    let deadline = started + env.health_timeout;
    let mut attempts = 0u32;
    let mut checks = Vec::new();
    let revision_checked = loop {
        attempts += 1;
        let verdict = get(&url).await.and_then(|(status, body, latency_ms)| {
            judge(status, &body, expect_revision).map(|r| (status, latency_ms, r))
        });
        let last = match verdict {
            Ok((status, latency_ms, with_revision)) => {
                checks.push(CheckResult {
                    name: format!(
                        "GET {}{}",
                        path_of(&url),
                        if on_host.is_some() { " (on the host)" } else { "" }
                    ),
                    status: Some(status),
                    latency_ms,
                    ok: true,
                    note: if with_revision {
                        format!("healthy, revision {}", crate::ui::prefix(expect_revision, 7))
                    } else {
                        "healthy (no revision in the answer)".to_string()
                    },
                });
                break with_revision;
            }
            Err(why) => why,
        };
        if Instant::now() + env.health_interval >= deadline {
            let on = on_host.map(|h| format!(" (on {h})")).unwrap_or_default();
            return Err(Error::failed(format!(
                "health check {url}{on} did not pass within {}: {last} (after {attempts} attempts)",
                crate::ui::format_duration(env.health_timeout)
            )));
        }
        tokio::time::sleep(env.health_interval).await;
    };
    let waited_ms = started.elapsed().as_millis() as u64;
    let base = reqwest::Url::parse(&url).map_err(|e| Error::failed(format!("health_url: {e}")))?;
    let on = on_host.map(|h| format!(" on {h}")).unwrap_or_default();
    smoke_all(env, &mut checks, &on, async |s| smoke(&base, s).await).await?;
    Ok(Verification {
        url,
        attempts,
        waited_ms,
        checks,
        revision_checked,
        warnings: Vec::new(),
    })
}

/// Runs the smoke checks in order (`check` sends one, from the runner or on a host), stopping at
/// the first that fails; `on` names where they ran in the error (` on <host>`, or empty).
pub(crate) async fn smoke_all(
    env: &EnvConfig,
    checks: &mut Vec<CheckResult>,
    on: &str,
    check: impl AsyncFn(&SmokeCheck) -> CheckResult,
) -> Result<()> {
    for smoke in &env.smoke {
        let result = check(smoke).await;
        let failed = (!result.ok).then(|| format!("smoke check {smoke}{on} failed: {}", result.note));
        checks.push(result);
        if let Some(msg) = failed {
            return Err(Error::failed(msg));
        }
    }
    Ok(())
}

pub(crate) fn path_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| url.to_string())
}

pub fn describe_http_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

async fn smoke_check(
    http: &reqwest::Client,
    base: &reqwest::Url,
    smoke: &SmokeCheck,
    timeout: Duration,
) -> CheckResult {
    let name = format!("{} {}", smoke.method, smoke.path);
    let t0 = Instant::now();
    let result = match (
        reqwest::Method::from_bytes(smoke.method.as_bytes()),
        base.join(&smoke.path),
    ) {
        (Ok(method), Ok(url)) => http
            .request(method, url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| describe_http_error(&e)),
        _ => Err("cannot build the request".to_string()),
    };
    let latency_ms = t0.elapsed().as_millis() as u64;
    match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let ok = status == smoke.status;
            let note = if ok {
                String::new()
            } else {
                format!("HTTP {status}, expected {}", smoke.status)
            };
            CheckResult {
                name,
                status: Some(status),
                latency_ms,
                ok,
                note,
            }
        }
        Err(note) => CheckResult {
            name,
            status: None,
            latency_ms,
            ok: false,
            note,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_url_never_carries_the_placeholder() {
        let hosts = [
            HostSpec::parse("h", "deploy@10.0.0.2:22").unwrap(),
            HostSpec::parse("h", "10.0.0.3").unwrap(),
        ];
        assert_eq!(
            environment_url("http://{host}:3000/api/health", &hosts).as_deref(),
            Some("http://10.0.0.2:3000")
        );
        assert_eq!(
            environment_url("https://journal.example.com/api/health", &hosts).as_deref(),
            Some("https://journal.example.com")
        );
        assert_eq!(environment_url("http://{host}:3000/api/health", &[]), None);
    }

    #[test]
    fn judging_answers() {
        let rev = "0123456789abcdef0123456789abcdef01234567";
        assert!(
            judge(
                200,
                br#"{"status":"healthy","revision":"0123456789abcdef0123456789abcdef01234567"}"#,
                rev
            )
            .is_ok()
        );
        assert!(judge(200, br#"{"status":"healthy"}"#, rev).is_ok());
        assert!(judge(200, br#"{"status":"healthy","revision":null}"#, rev).is_ok());
        let old = judge(200, br#"{"status":"healthy","revision":"ffff"}"#, rev).unwrap_err();
        assert!(old.contains("revision ffff"), "{old}");
        assert!(
            judge(503, br#"{"status":"unhealthy"}"#, rev)
                .unwrap_err()
                .contains("HTTP 503")
        );
        assert!(judge(200, b"OK", rev).unwrap_err().contains("status"));
        assert!(judge(200, br#"{"status":"degraded"}"#, rev).is_err());
    }

    #[test]
    fn an_ipv6_host_is_bracketed_in_the_url() {
        let h = HostSpec::parse("hosts", "deploy@[::1]:2222").unwrap();
        assert_eq!(
            url_for("http://{host}:3000/api/health", &h),
            "http://[::1]:3000/api/health"
        );
        let h = HostSpec::parse("hosts", "deploy@10.0.0.1").unwrap();
        assert_eq!(
            url_for("http://{host}:3000/api/health", &h),
            "http://10.0.0.1:3000/api/health"
        );
    }
}
