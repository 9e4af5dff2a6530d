//! The GitHub stand-in for tests: the stateful fake (tests/github/fake.js) behind Prism in proxy
//! mode with GitHub's OpenAPI description (--errors), started once per test binary and stopped
//! when the test process ends (its supervisor exits when our pipe to it closes).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::repo;

pub struct FakeGithub {
    /// Prism's port: what tj-deploy talks to.
    pub api_port: u16,
    /// The fake's own port, for test setup and state.
    pub fake_port: u16,
    pub log: PathBuf,
    _child: Mutex<Child>,
}

pub fn github() -> &'static FakeGithub {
    static G: OnceLock<FakeGithub> = OnceLock::new();
    G.get_or_init(|| {
        let tools = repo().join(".ci/tools");
        let log = std::env::temp_dir().join(format!("tj-fake-github-{}.log", std::process::id()));
        let mut child = Command::new("node")
            .arg(repo().join("tests/github/serve.js"))
            .arg(&tools)
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("required test service missing: node (for the fake GitHub and Prism); run .ci/setup");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert!(
            parts.first() == Some(&"ready"),
            "required test service missing: Prism/fake GitHub did not start ({line:?}); run .ci/setup. Log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        FakeGithub {
            api_port: parts[1].parse().unwrap(),
            fake_port: parts[2].parse().unwrap(),
            log,
            _child: Mutex::new(child),
        }
    })
}

/// A minimal HTTP/1.1 client for the fake's control API and negative tests through Prism.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let raw = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let chunked = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let json_text = if chunked { dechunk(raw) } else { raw.to_string() };
    (
        status,
        serde_json::from_str(&json_text).unwrap_or(serde_json::Value::Null),
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl FakeGithub {
    pub fn setup(&self, repo: &str, state: serde_json::Value) {
        let (status, _) = http(
            self.fake_port,
            "PUT",
            &format!("/_fake/repos/{repo}"),
            &[],
            Some(&state),
        );
        assert_eq!(status, 200);
    }
    /// Moves branches (`{"develop": [sha, ...]}`), keeping deployments and check runs.
    pub fn set_branches(&self, repo: &str, branches: serde_json::Value) {
        let body = serde_json::json!({ "branches": branches });
        let (status, _) = http(
            self.fake_port,
            "PATCH",
            &format!("/_fake/repos/{repo}"),
            &[],
            Some(&body),
        );
        assert_eq!(status, 200);
    }
    pub fn state(&self, repo: &str) -> serde_json::Value {
        http(self.fake_port, "GET", &format!("/_fake/repos/{repo}"), &[], None).1
    }
    pub fn fault(&self, fault: serde_json::Value) {
        assert_eq!(http(self.fake_port, "POST", "/_fake/faults", &[], Some(&fault)).0, 200);
    }
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }
    /// Prism's complaints about requests or responses on `repo`'s paths.
    pub fn violations(&self, repo: &str) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            // A status the spec does not list is only a warning (our injected 429s and 502s).
            let injected = l.contains("Unable to match the returned status code");
            if !injected
                && (l.contains("Request terminated with error") || l.contains("VIOLATIONS") || l.contains("Violation:"))
                && lines[i.saturating_sub(3)..=i]
                    .iter()
                    .any(|x| x.contains(&format!("/repos/{repo}/")))
            {
                out.push(l.to_string());
            }
        }
        out
    }
}
