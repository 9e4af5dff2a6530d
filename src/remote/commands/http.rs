//! HTTP requests made on a host itself (`health_from = "host"`): which client the host has,
//! one request whose status, time and (bounded) body come back in a parseable form, and the
//! availability probe loop. Each works with `curl`, else `wget`, else `node`.

use std::time::Duration;

use super::Script;

/// The most of an answer's body that comes back (a health answer is a few hundred bytes).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The HTTP client a host has, detected once per host by [`http_tool_probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpTool {
    Curl,
    Wget,
    Node,
}

impl HttpTool {
    pub fn name(self) -> &'static str {
        match self {
            HttpTool::Curl => "curl",
            HttpTool::Wget => "wget",
            HttpTool::Node => "node",
        }
    }
    /// The probe's answer: `None` when the host has none of the three.
    pub fn parse(stdout: &str) -> Option<HttpTool> {
        match stdout.trim() {
            "curl" => Some(HttpTool::Curl),
            "wget" => Some(HttpTool::Wget),
            "node" => Some(HttpTool::Node),
            _ => None,
        }
    }
}

/// Prints `curl`, `wget`, `node` or `none`: the first the host has on the PATH. A BusyBox
/// `wget` lacks the options [`http_request`] needs, so only a GNU one counts.
pub fn http_tool_probe() -> Script {
    Script::new("detect an HTTP client").repeatable().line(
        "if command -v curl >/dev/null 2>&1; then echo curl
elif command -v wget >/dev/null 2>&1 && wget --version 2>/dev/null | grep -q 'GNU Wget'; then echo wget
elif command -v node >/dev/null 2>&1; then echo node
else echo none; fi",
    )
}

/// One request for the node client: prints `tj-http <status> <ms>ms`, then the body (at most
/// [`BODY_LIMIT`] bytes); status 000 and the reason on stderr when no answer came.
const NODE_REQUEST: &str = r#"const [m, u, t, lim] = process.argv.slice(1);
const mod = u.startsWith('https:') ? require('https') : require('http');
const t0 = Date.now();
const fail = (e) => { process.stdout.write('tj-http 000 ' + (Date.now() - t0) + 'ms\n'); process.stderr.write(String(e && e.message || e) + '\n'); };
const r = mod.request(u, { method: m, timeout: Number(t), headers: { connection: 'close' } }, (res) => {
  const c = []; let n = 0;
  res.on('data', (d) => { if (n < Number(lim)) { c.push(d); n += d.length; } });
  res.on('end', () => { process.stdout.write('tj-http ' + res.statusCode + ' ' + (Date.now() - t0) + 'ms\n'); process.stdout.write(Buffer.concat(c).subarray(0, Number(lim))); });
  res.on('error', fail);
});
r.on('timeout', () => r.destroy(new Error('timed out after ' + t + ' ms')));
r.on('error', fail);
r.end();"#;

fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64().max(0.001))
}

/// One request with `tool`: prints `tj-http <status> <time>` (status 000: no answer, the
/// reason on stderr; time as `<s>s` or `<ms>ms`) and then at most [`BODY_LIMIT`] bytes of the
/// body. Redirects are not followed, as from the runner.
pub fn http_request(tool: HttpTool, method: &str, url: &str, timeout: Duration) -> Script {
    let s = Script::new(&format!("{method} {url} on the host"))
        .repeatable()
        .var("METHOD", method)
        .var("URL", url)
        .var("T", &seconds(timeout))
        .var("TMS", &timeout.as_millis().max(1).to_string())
        .var("LIM", &BODY_LIMIT.to_string());
    match tool {
        HttpTool::Curl => s
            .line("f=$(mktemp); trap 'rm -f \"$f\"' EXIT")
            .line("w=$(curl -sS -o \"$f\" -w '%{http_code} %{time_total}' -X \"$METHOD\" --max-time \"$T\" -H 'Connection: close' \"$URL\") || true")
            .line("echo \"tj-http ${w%% *} ${w#* }s\"")
            .line("head -c \"$LIM\" \"$f\""),
        HttpTool::Wget => s
            .line("f=$(mktemp); h=$(mktemp); trap 'rm -f \"$f\" \"$h\"' EXIT")
            .line("t0=$(date +%s%N)")
            .line("wget -q -S --content-on-error --max-redirect=0 -t 1 -T \"$T\" --method=\"$METHOD\" --header='Connection: close' -O \"$f\" \"$URL\" 2>\"$h\" || true")
            .line("t1=$(date +%s%N)")
            .line("code=$(sed -n 's/^ *HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/\\1/p' \"$h\" | tail -n 1)")
            .line("[ -n \"$code\" ] || { code=000; grep -v '^ ' \"$h\" | tail -n 2 >&2 || true; }")
            .line("echo \"tj-http $code $(( (t1 - t0) / 1000000 ))ms\"")
            .line("head -c \"$LIM\" \"$f\""),
        HttpTool::Node => s
            .var("JS", NODE_REQUEST)
            .line("node -e \"$JS\" \"$METHOD\" \"$URL\" \"$TMS\" \"$LIM\""),
    }
}

/// What [`http_request`] printed: status (0: no answer), latency in ms, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAnswer {
    pub status: u16,
    pub latency_ms: u64,
    pub body: Vec<u8>,
}

impl HostAnswer {
    /// `None` when the output does not start with the `tj-http` line.
    pub fn parse(stdout: &str) -> Option<HostAnswer> {
        let (first, body) = stdout.split_once('\n').unwrap_or((stdout, ""));
        let mut words = first.strip_prefix("tj-http ")?.split_whitespace();
        let status = words.next()?.parse().ok()?;
        let time = words.next().unwrap_or("0ms");
        let latency_ms = if let Some(ms) = time.strip_suffix("ms") {
            ms.parse().unwrap_or(0)
        } else {
            let s: f64 = time.trim_end_matches('s').parse().unwrap_or(0.0);
            (s * 1000.0).round() as u64
        };
        let mut body = body.as_bytes().to_vec();
        body.truncate(BODY_LIMIT);
        Some(HostAnswer {
            status,
            latency_ms,
            body,
        })
    }
}

/// The probe loop for node: same lines as the shell loop, one process.
const NODE_LOOP: &str = r#"const [u, every, t, max, stop] = process.argv.slice(1).map((v, i) => (i === 0 || i === 4 ? v : Number(v)));
const fs = require('fs');
const mod = u.startsWith('https:') ? require('https') : require('http');
const t0 = Date.now(); let open = 0; let done = false;
const finish = () => { if (done && open === 0) { try { fs.unlinkSync(stop); } catch (_) {} console.log('probe-end ' + (Date.now() - t0)); process.exit(0); } };
const tick = setInterval(() => {
  const sent = Date.now() - t0;
  if (sent >= max || fs.existsSync(stop)) { clearInterval(tick); done = true; finish(); return; }
  open++; let said = false;
  const say = (ok) => { if (said) return; said = true; open--; console.log('probe ' + sent + ' ' + (ok ? 1 : 0) + ' ' + (Date.now() - t0 - sent)); finish(); };
  const r = mod.get(u, { timeout: t, headers: { connection: 'close' } }, (res) => { res.resume(); res.on('end', () => say(res.statusCode >= 200 && res.statusCode < 300)); res.on('error', () => say(false)); });
  r.on('timeout', () => { r.destroy(); say(false); });
  r.on('error', () => say(false));
}, every);"#;

/// Probes `url` on the host every `every` until `stop_file` appears or `max` has passed; each
/// probe prints `probe <ms since the start> <ok 0|1> <latency ms>` when it ends (probes
/// overlap, so a hanging one never delays the next), and the loop ends with
/// `probe-end <ms since the start>`. It runs behind the transport's watchdog: the run ending
/// any other way stops it too.
pub fn probe_loop(
    tool: HttpTool,
    url: &str,
    every: Duration,
    timeout: Duration,
    max: Duration,
    stop_file: &str,
) -> Script {
    let s = Script::new("availability probes on the host")
        .var("URL", url)
        .var("STOP", stop_file)
        .var("EVERY", &seconds(every))
        .var("EVERY_MS", &every.as_millis().max(1).to_string())
        .var("T", &seconds(timeout))
        .var("TMS", &timeout.as_millis().max(1).to_string())
        .var("MAX", &max.as_millis().to_string());
    let once = match tool {
        HttpTool::Node => {
            return s
                .var("JS", NODE_LOOP)
                .line("exec node -e \"$JS\" \"$URL\" \"$EVERY_MS\" \"$TMS\" \"$MAX\" \"$STOP\"");
        }
        HttpTool::Curl => {
            "c=$(curl -s -o /dev/null -w '%{http_code}' --max-time \"$T\" -H 'Connection: close' \"$URL\") || true; case $c in 2??) ok=1;; *) ok=0;; esac"
        }
        HttpTool::Wget => {
            "ok=0; wget -q -O /dev/null -t 1 -T \"$T\" --max-redirect=0 --header='Connection: close' \"$URL\" 2>/dev/null && ok=1"
        }
    };
    s.line("now() { date +%s%3N; }")
        .line("start=$(now)")
        .line("trap 'rm -f \"$STOP\"' EXIT")
        .line("# A subshell, so `wait` waits for the probes only, not for the watchdog.")
        .line("( while :; do")
        .line("  sent=$(( $(now) - start ))")
        .line("  if [ -e \"$STOP\" ] || [ \"$sent\" -ge \"$MAX\" ]; then break; fi")
        .line(&format!(
            "  ( {once}; echo \"probe $sent $ok $(( $(now) - start - sent ))\" ) &"
        ))
        .line("  sleep \"$EVERY\"")
        .line("done; wait )")
        .line("echo \"probe-end $(( $(now) - start ))\"")
}

/// Ends a [`probe_loop`] within one interval: it sees the file and stops (and removes it).
pub fn probe_stop(stop_file: &str) -> Script {
    Script::new("stop the availability probes")
        .repeatable()
        .var("STOP", stop_file)
        .line(": > \"$STOP\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &Script) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script.text())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn answers_parse() {
        let a = HostAnswer::parse("tj-http 200 0.012345s\n{\"status\":\"healthy\"}").unwrap();
        assert_eq!((a.status, a.latency_ms), (200, 12));
        assert_eq!(a.body, b"{\"status\":\"healthy\"}");
        let a = HostAnswer::parse("tj-http 000 7ms\n").unwrap();
        assert_eq!((a.status, a.latency_ms, a.body.len()), (0, 7, 0));
        assert!(HostAnswer::parse("curl: not found").is_none());
    }

    #[test]
    fn values_are_quoted() {
        let s = http_request(
            HttpTool::Curl,
            "GET",
            "http://x/$(touch /tmp/pwned)'",
            Duration::from_secs(1),
        );
        assert!(
            s.text().contains("URL='http://x/$(touch /tmp/pwned)'\\'''"),
            "{}",
            s.text()
        );
    }

    /// Every client against a real server: status, body and a connection refused.
    #[test]
    fn each_client_requests_a_real_server() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let Ok(mut c) = c else { return };
                let mut buf = [0u8; 2048];
                let _ = c.read(&mut buf);
                let _ = c.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 22\r\nConnection: close\r\n\r\n{\"status\":\"unhealthy\"}",
                );
            }
        });
        let tool = HttpTool::parse(&sh(&http_tool_probe()));
        assert!(tool.is_some(), "this machine has curl, wget or node");
        for tool in [HttpTool::Curl, HttpTool::Wget, HttpTool::Node] {
            let url = format!("http://{addr}/api/health");
            let out = sh(&http_request(tool, "GET", &url, Duration::from_secs(2)));
            let a = HostAnswer::parse(&out).unwrap_or_else(|| panic!("{tool:?}: {out}"));
            assert_eq!(a.status, 503, "{tool:?}: {out}");
            assert_eq!(a.body, b"{\"status\":\"unhealthy\"}", "{tool:?}");
            let out = sh(&http_request(
                tool,
                "GET",
                "http://127.0.0.1:9/x",
                Duration::from_secs(2),
            ));
            assert_eq!(HostAnswer::parse(&out).map(|a| a.status), Some(0), "{tool:?}: {out}");
        }
    }

    /// Each client's probe loop against a port nobody listens on: it runs until its maximum,
    /// every probe fails, and the lines parse; a stop file ends it early.
    /// Through the local transport, behind the watchdog that holds stdin, as on a host.
    async fn run(script: &Script) -> String {
        use crate::remote::Transport;
        let t = crate::remote::local::LocalTransport::new("local");
        let ran = tokio::time::timeout(Duration::from_secs(10), t.run(script, crate::remote::Mode::Capture)).await;
        ran.expect("the loop ends by itself").unwrap().stdout
    }

    #[tokio::test]
    async fn probe_loops_run_bounded_and_stop_on_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for tool in [HttpTool::Curl, HttpTool::Wget, HttpTool::Node] {
            let stop = dir.path().join(format!("{tool:?}.stop")).display().to_string();
            let every = Duration::from_millis(75);
            let script = probe_loop(
                tool,
                "http://127.0.0.1:9/",
                every,
                Duration::from_secs(1),
                Duration::from_millis(600),
                &stop,
            );
            let out = run(&script).await;
            let (samples, end) = crate::availability::parse_loop(&out);
            assert!((4..=10).contains(&samples.len()), "{tool:?}: {out}");
            assert!(samples.iter().all(|s| !s.ok), "{tool:?}: {out}");
            assert!(end.is_some_and(|e| e >= 600), "{tool:?}: {out}");
            std::fs::write(&stop, "").unwrap();
            let t0 = std::time::Instant::now();
            let script = probe_loop(
                tool,
                "http://127.0.0.1:9/",
                every,
                Duration::from_secs(1),
                Duration::from_secs(30),
                &stop,
            );
            let out = run(&script).await;
            assert!(t0.elapsed() < Duration::from_secs(5), "{tool:?}: {out}");
            assert!(!std::path::Path::new(&stop).exists(), "the loop removes its stop file");
        }
    }
}
