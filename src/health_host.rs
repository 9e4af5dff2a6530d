//! Verification from each host itself (`health_from = "host"`, for servers whose app only the
//! host can reach): `health_url` and the smoke requests are sent on the host over the existing
//! SSH connection with the client it has ([`HttpTool`]), judged by the same rules as from the
//! runner ([`crate::health::judge`]); latencies are the host's own. Also the one check of
//! `public_url` from the runner once every host verified.

use std::time::{Duration, Instant};

use crate::config::{EnvConfig, HostSpec, SmokeCheck};
use crate::error::{Error, Result};
use crate::health::{CheckResult, Verification, judge, url_for};
use crate::remote::commands::{self, HostAnswer, HttpTool};
use crate::remote::{Mode, Transport};

/// Beyond the request's own time limit, what the SSH round trip may take.
const SSH_SLACK: Duration = Duration::from_secs(10);

/// The HTTP client on the host: `curl`, else `wget`, else `node`.
pub async fn detect<T: Transport>(t: &T) -> Result<HttpTool> {
    let out = t.run(&commands::http_tool_probe(), Mode::Capture).await?;
    let out = out.check(&format!("{}: detect an HTTP client", t.name()))?;
    HttpTool::parse(&out.stdout).ok_or_else(|| {
        Error::failed(format!(
            "{}: health_from = \"host\" needs curl, wget (GNU) or node on the host; none is on the PATH of a non-interactive SSH command",
            t.name()
        ))
    })
}

/// One request on the host; `Err` says why no answer came.
pub async fn request<T: Transport>(
    t: &T,
    tool: HttpTool,
    method: &str,
    url: &str,
    timeout: Duration,
) -> std::result::Result<HostAnswer, String> {
    let script = commands::http_request(tool, method, url, timeout);
    let out = match tokio::time::timeout(timeout + SSH_SLACK, t.run(&script, Mode::Capture)).await {
        Err(_) => {
            return Err(format!(
                "no answer over SSH within {}",
                crate::ui::format_duration(timeout + SSH_SLACK)
            ));
        }
        Ok(Err(e)) => return Err(e.message),
        Ok(Ok(out)) => out,
    };
    match HostAnswer::parse(&out.stdout) {
        Some(a) if a.status != 0 => Ok(a),
        Some(_) => Err(format!(
            "connection failed on the host ({}): {}",
            tool.name(),
            out.tail()
        )),
        None => Err(format!("{} on the host failed: {}", tool.name(), out.tail())),
    }
}

/// Polls `health_url` on the host until healthy or `health_timeout`; then the smoke checks.
pub async fn verify<T: Transport>(
    t: &T,
    tool: HttpTool,
    env: &EnvConfig,
    host: &HostSpec,
    expect_revision: &str,
) -> Result<Verification> {
    let timeout = env.health_request_timeout;
    let get = async |url: &str| {
        request(t, tool, "GET", url, timeout)
            .await
            .map(|a| (a.status, a.body, a.latency_ms))
    };
    let smoke = async |base: &reqwest::Url, smoke: &SmokeCheck| smoke_check(t, tool, base, smoke, timeout).await;
    let url = url_for(&env.health_url, host);
    crate::health::poll_then_smoke(env, url, expect_revision, Some(t.name()), get, smoke).await
}

async fn smoke_check<T: Transport>(
    t: &T,
    tool: HttpTool,
    base: &reqwest::Url,
    smoke: &SmokeCheck,
    timeout: Duration,
) -> CheckResult {
    let name = format!("{} {} (on the host)", smoke.method, smoke.path);
    let result = match base.join(&smoke.path) {
        Ok(u) => request(t, tool, &smoke.method, u.as_str(), timeout).await,
        Err(e) => Err(format!("cannot build the request: {e}")),
    };
    match result {
        Ok(a) => CheckResult {
            name,
            status: Some(a.status),
            latency_ms: a.latency_ms,
            ok: a.status == smoke.status,
            note: if a.status == smoke.status {
                String::new()
            } else {
                format!("HTTP {}, expected {}", a.status, smoke.status)
            },
        },
        Err(note) => CheckResult {
            name,
            status: None,
            latency_ms: 0,
            ok: false,
            note,
        },
    }
}

/// The environment's URL for reports: `public_url`'s origin when set; otherwise the health
/// URL's, unless that is requested on the hosts (their own address is nobody's way in).
pub fn environment_url(env: &EnvConfig) -> Option<String> {
    match &env.public_url {
        Some(u) => crate::health::environment_url(u, &env.hosts),
        None if env.health_from_host => None,
        None => crate::health::environment_url(&env.health_url, &env.hosts),
    }
}

/// `public_url` requested once from the runner (the balancer's path), by the health rules;
/// `revision` when every host serves the same commit. A failure is a warning: every host
/// already verified on its own, so what fails lies in front of them (balancer, DNS, TLS),
/// which rolling the hosts back would not repair.
pub async fn public_check(http: &reqwest::Client, env: &EnvConfig, revision: Option<&str>) -> Option<CheckResult> {
    let url = env.public_url.as_deref()?;
    let t0 = Instant::now();
    let answer = http.get(url).timeout(env.health_request_timeout).send().await;
    let (status, verdict) = match answer {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let verdict = match resp.bytes().await {
                Ok(body) => judge(status, &body, revision.unwrap_or_default()).or_else(|e| {
                    // No commit to compare with (a rollback to a release without one).
                    if revision.is_none() && e.starts_with("revision ") {
                        Ok(false)
                    } else {
                        Err(e)
                    }
                }),
                Err(e) => Err(format!("reading the answer: {e}")),
            };
            (Some(status), verdict)
        }
        Err(e) => (None, Err(format!("request failed: {e}"))),
    };
    let latency_ms = t0.elapsed().as_millis() as u64;
    let name = format!("GET {url} (public)");
    let check = match verdict {
        Ok(with_revision) => CheckResult {
            name,
            status,
            latency_ms,
            ok: true,
            note: if with_revision {
                "healthy, same revision".to_string()
            } else {
                "healthy".to_string()
            },
        },
        Err(note) => CheckResult {
            name,
            status,
            latency_ms,
            ok: false,
            note,
        },
    };
    if !check.ok {
        crate::ui::warn(&format!(
            "public_url {url}: {} (every host verified on its own; check the balancer's path)",
            check.note
        ));
    }
    Some(check)
}
