//! Servers reachable only over SSH (issue #21): each host's app listens on 127.0.0.1 inside its
//! own network namespace, so the test's process (the runner) cannot reach it, and the
//! environment says `health_from = "host"`. Verification, the smoke requests and the
//! availability probes all run on each host through SSH; a host that fails its verification is
//! rolled back with the others; `public_url` (here a stand-in balancer in the test) is checked
//! once from the runner.

mod support;

use std::io::{Read, Write};

use support::fleet::{Fleet, Host};
use support::sha;

/// Makes the release unhealthy on a host whose `shared/MAKE_UNHEALTHY` exists.
const HOOKS: &str = r#"install = 'npm ci --omit=dev --no-audit --no-fund --offline && if [ -e "$TJ_DEPLOY_DIR/shared/MAKE_UNHEALTHY" ]; then touch UNHEALTHY; fi'"#;

const PRIVATE_URL: &str = "http://127.0.0.1:3000/api/health";

/// GET /api/health from inside the host's own namespace: (status, body).
fn health_inside(h: &Host) -> String {
    support::sh_ok(&format!(
        "ip netns exec {} curl -s -w ' %{{http_code}}' --max-time 5 {PRIVATE_URL} || true",
        h.ns
    ))
}

/// A balancer stand-in on the runner's side: answers every request healthy (no revision).
fn balancer() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(mut c) = c else { return };
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let body = r#"{"status":"healthy"}"#;
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/api/health")
}

fn private_fleet(name: &str) -> Fleet {
    let f = Fleet::shared(name, 2);
    for h in &f.hosts {
        let env = h.deploy_dir().join("shared/.env");
        let mut text = std::fs::read_to_string(&env).expect("read .env");
        text.push_str("HOST=127.0.0.1\n");
        std::fs::write(&env, text).expect("write .env");
    }
    let extra = format!(
        "health_from = \"host\"\nhealth_timeout = \"4s\"\nreuse_dependencies = false\npublic_url = \"{}\"\n{HOOKS}",
        balancer()
    );
    let text = support::config_text(
        &f.build_dir,
        &f.specs(),
        &f.deploy_dir,
        &f.backup_dir,
        PRIVATE_URL,
        &extra,
    );
    std::fs::write(&f.config, text).expect("write config");
    f
}

/// The figures of the availability line: (failed, probes).
fn availability(all: &str) -> (u64, u64) {
    let line = all
        .lines()
        .find(|l| l.contains("availability: ") && l.contains(" probes failed"))
        .unwrap_or_else(|| panic!("no availability line:\n{all}"));
    let rest = &line[line.find("availability: ").unwrap() + "availability: ".len()..];
    let words: Vec<&str> = rest.split_whitespace().collect();
    (words[0].parse().unwrap(), words[2].parse().unwrap())
}

/// 1. v1 on two private hosts: the runner cannot reach either app, yet the deploy verifies each
///    on the host itself (health with the revision, both smoke requests), measures availability
///    on the hosts and checks the public URL once.
/// 2. v2, unhealthy on the second host: its verification on the host fails, so both hosts go
///    back to v1, v2 is marked bad, and the probes on the hosts saw the failing host's 503s.
/// 3. v3, then `rollback`: back on v1, verified on the hosts, the public URL checked.
#[test]
fn private_hosts_verify_smoke_probe_and_roll_back_over_ssh() {
    let f = private_fleet("priv");
    let run = f.deploy(&sha(1));
    run.expect(0);
    let all = run.all();
    for h in &f.hosts {
        assert!(h.health().is_none(), "{}: the runner must not reach the app", h.spec());
        let inside = health_inside(h);
        assert!(
            inside.ends_with(" 200") && inside.contains(&sha(1)),
            "{}: {inside}",
            h.spec()
        );
    }
    for check in [
        "GET /api/health (on the host)",
        "GET /api/me (on the host)",
        "GET /api/brokers (on the host)",
    ] {
        assert_eq!(all.matches(check).count(), 2, "{check} once per host:\n{all}");
    }
    assert!(all.contains("(public)"), "the public URL is checked once:\n{all}");
    let (failed, probes) = availability(&all);
    assert!(probes >= 2, "probes ran on both hosts:\n{all}");
    // Nothing served before this first switch; the successes are answers only the hosts see.
    assert!(failed < probes, "some probes reached the app on the hosts:\n{all}");
    let r1 = f.hosts[0].releases()[0].clone();

    f.set_app("2.0.0");
    let flag = f.hosts[1].deploy_dir().join("shared/MAKE_UNHEALTHY");
    std::fs::write(&flag, "").expect("flag");
    support::sh_ok(&format!("chown deploy: {}", flag.display()));
    let run = f.deploy(&sha(2));
    run.expect(1);
    let all = run.all();
    let error = run.error_line();
    assert!(error.contains("(on ") && error.contains("\"unhealthy\""), "{error}");
    let r2 = f.hosts[0].releases().last().unwrap().clone();
    assert!(r2 > r1);
    for h in &f.hosts {
        assert!(
            error.contains(&format!("{}: rolled back, release {r1}", h.spec())),
            "{error}"
        );
        assert!(h.is_bad(&r2), "{}", h.spec());
        assert_eq!(h.current(), Some(format!("releases/{r1}")), "{}", h.spec());
        let inside = health_inside(h);
        assert!(
            inside.ends_with(" 200") && inside.contains(&sha(1)),
            "{}: {inside}",
            h.spec()
        );
        assert!(!h.lock_exists(), "{}", h.spec());
        let left: Vec<_> = std::fs::read_dir(h.deploy_dir().join(".tj-deploy"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("probe-"))
            .collect();
        assert!(left.is_empty(), "{}: stop files left: {left:?}", h.spec());
    }
    let (failed, probes) = availability(&all);
    assert!(
        probes >= 2 && failed > 0,
        "the probes on the second host saw its 503s:\n{all}"
    );
    assert!(
        !all.contains("(public)"),
        "no public check after a failed verification:\n{all}"
    );

    // 3. v3 healthy everywhere, then a rollback to v1: verified on the hosts as well.
    std::fs::remove_file(&flag).expect("unflag");
    f.set_app("3.0.0");
    f.deploy(&sha(3)).expect(0);
    let run = f.run(&["rollback", "-e", "staging"]);
    run.expect(0);
    let all = run.all();
    assert_eq!(all.matches("GET /api/health (on the host)").count(), 2, "{all}");
    assert!(all.contains("(public)"), "{all}");
    availability(&all);
    for h in &f.hosts {
        let inside = health_inside(h);
        assert!(
            inside.ends_with(" 200") && inside.contains(&sha(1)),
            "{}: {inside}",
            h.spec()
        );
    }

    // 4. A watch on private hosts probes from each host: a release that turns slow 5 s after
    //    it started is rolled back by the p95 the hosts measured.
    f.set_app("4.0.0");
    std::fs::write(f.build_dir.join("SLOW_AFTER"), "5 600").expect("mode file");
    let mut text = std::fs::read_to_string(&f.config).expect("config");
    text.push_str(
        "probe_rate = \"5/s\"\n[environments.staging.watch]\nduration = \"16s\"\ninterval = \"2s\"\n\
         initial_delay = \"2s\"\nconsecutive = 2\nmin_requests = 4\n\
         p95 = { warning = \"200ms\", critical = \"400ms\" }\n\
         cpu = { warning = \"100%\", critical = \"100%\" }\nmemory = { warning = \"100%\", critical = \"100%\" }\n\
         disk = { warning = \"100%\", critical = \"100%\" }\n",
    );
    std::fs::write(&f.config, text).expect("write config");
    let run = f.deploy(&sha(4));
    run.expect(1);
    let line = run.error_line();
    assert!(
        line.contains("watch: ") && line.contains("p95"),
        "{line}\n{}",
        run.all()
    );
    assert!(run.all().contains("probes run on each host"), "{}", run.all());
    for h in &f.hosts {
        let inside = health_inside(h);
        assert!(inside.contains(&sha(1)), "{}: v1 serves again: {inside}", h.spec());
    }
}
