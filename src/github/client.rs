//! The GitHub REST client: octocrab for transport and auth, with our own retry policy because
//! repeating a request is only safe sometimes. GETs (and full-state PATCHes) retry on 5xx, 429
//! and timeouts with backoff, honouring `Retry-After` / `x-ratelimit-reset`; POSTs that create
//! things retry only after a lookup proves the first attempt did not land (see [`Github::create`]).

use std::time::Duration;

use http::header::{ACCEPT, HeaderName, USER_AGENT};
use octocrab::Octocrab;
use serde_json::Value;

use crate::error::{Error, Result};

pub struct Github {
    octo: Octocrab,
    /// `owner/repo`
    pub repo: String,
    attempts: u32,
    backoff: Duration,
    request_timeout: Duration,
}

/// One answer from GitHub.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<Duration>,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// Worth another try: GitHub's side failed or asked us to slow down.
    fn transient(&self) -> bool {
        self.status >= 500 || self.status == 429 || (self.status == 403 && self.retry_after.is_some())
    }
    fn message(&self) -> String {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }
}

impl Github {
    pub fn new(token: &str, api_url: &str, repo: &str) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| Error::invalid(format!("GITHUB_API_URL: {api_url:?}: {e}"));
        let octo = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|e| bad(&e))?
            .personal_token(token.to_string())
            .add_header(ACCEPT, "application/vnd.github+json, application/json".to_string())
            .add_header(
                HeaderName::from_static("x-github-api-version"),
                "2022-11-28".to_string(),
            )
            .add_header(USER_AGENT, concat!("tj-deploy/", env!("CARGO_PKG_VERSION")).to_string())
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| bad(&e))?;
        Ok(Github {
            octo,
            repo: repo.to_string(),
            attempts: 4,
            backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
        })
    }

    /// Shorter waits between retries (tests).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}{rest}", self.repo)
    }

    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
        let call = async {
            match method {
                "GET" => self.octo._get(path).await,
                "POST" => self.octo._post(path, body).await,
                "PATCH" => self.octo._patch(path, body).await,
                _ => unreachable!("only GET, POST and PATCH are used"),
            }
        };
        let response = tokio::time::timeout(self.request_timeout, call)
            .await
            .map_err(|_| Error::failed(format!("GitHub {method} {path}: timed out")))?
            .map_err(|e| Error::failed(format!("GitHub {method} {path}: {e}")))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .or_else(|| {
                // A rate limit reset time, when the remaining quota is zero.
                let reset: u64 = header("x-ratelimit-reset")?.parse().ok()?;
                (header("x-ratelimit-remaining").as_deref() == Some("0")).then(|| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs();
                    Duration::from_secs(reset.saturating_sub(now).max(1))
                })
            });
        let text = self
            .octo
            .body_to_string(response)
            .await
            .map_err(|e| Error::failed(format!("GitHub {method} {path}: {e}")))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            body,
            retry_after,
        })
    }

    /// Waits before attempt `n` (1-based): Retry-After if given (capped), else exponential backoff.
    async fn pause(&self, n: u32, retry_after: Option<Duration>) {
        let wait = retry_after
            .map(|d| d.min(Duration::from_secs(60)))
            .unwrap_or(self.backoff * 2u32.pow(n.saturating_sub(1)));
        tokio::time::sleep(wait).await;
    }

    /// A request that is safe to repeat.
    async fn repeatable(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
        let mut last = None;
        for n in 1..=self.attempts {
            match self.send(method, path, body).await {
                Ok(r) if r.ok() || !r.transient() => return Ok(r),
                Ok(r) => {
                    if n < self.attempts {
                        self.pause(n, r.retry_after).await;
                    }
                    last = Some(Ok(r));
                }
                Err(e) => {
                    if n < self.attempts {
                        self.pause(n, None).await;
                    }
                    last = Some(Err(e));
                }
            }
        }
        last.unwrap_or_else(|| Err(Error::failed(format!("GitHub {method} {path}: no attempt made"))))
    }

    fn expect_ok(method: &str, path: &str, r: Reply) -> Result<Value> {
        if r.ok() {
            Ok(r.body)
        } else {
            Err(Error::failed(
                format!("GitHub {method} {path}: HTTP {} {}", r.status, r.message())
                    .trim_end()
                    .to_string(),
            ))
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let r = self.repeatable("GET", path, None).await?;
        Self::expect_ok("GET", path, r)
    }

    /// A PATCH that sets a full state (completing a check run): repeating it changes nothing.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self.repeatable("PATCH", path, Some(body)).await?;
        Self::expect_ok("PATCH", path, r)
    }

    /// A POST that creates something. A 429 was refused, so it is sent again after the wait;
    /// after a 5xx or a timeout the first attempt may have landed, so `find` (a lookup by a
    /// marker we put in the body) is asked first, and only when it finds nothing is the POST
    /// repeated. So a flaky proxy never yields a duplicate deployment or check run.
    pub async fn create<F, Fut>(&self, path: &str, body: &Value, find: F) -> Result<Value>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<Value>>>,
    {
        let mut last = String::new();
        for n in 1..=self.attempts {
            let outcome = self.send("POST", path, Some(body)).await;
            let maybe_landed = match &outcome {
                Ok(r) if r.ok() => return Ok(r.body.clone()),
                Ok(r) if r.status == 429 || (r.status == 403 && r.retry_after.is_some()) => {
                    last = format!("HTTP {} {}", r.status, r.message());
                    if n < self.attempts {
                        self.pause(n, r.retry_after).await;
                    }
                    false
                }
                Ok(r) if r.status >= 500 => {
                    last = format!("HTTP {} {}", r.status, r.message());
                    true
                }
                Ok(r) => {
                    return Err(Error::failed(format!(
                        "GitHub POST {path}: HTTP {} {}",
                        r.status,
                        r.message()
                    )));
                }
                Err(e) => {
                    last = e.message.clone();
                    true
                }
            };
            if maybe_landed {
                if n < self.attempts {
                    self.pause(n, None).await;
                }
                if let Ok(Some(found)) = find().await {
                    return Ok(found);
                }
            }
        }
        Err(Error::failed(format!(
            "GitHub POST {path}: {last} (after {} attempts)",
            self.attempts
        )))
    }

    /// Like [`Github::create`] but reports a 403 as `Ok(None)`: fork PRs get a read-only token.
    pub async fn create_or_forbidden<F, Fut>(&self, path: &str, body: &Value, find: F) -> Result<Option<Value>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<Value>>>,
    {
        match self.create(path, body, find).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.message.contains("HTTP 403") => Ok(None),
            Err(e) => Err(e),
        }
    }
}
