//! Availability as users see it while a release changes (issue #12 item 4): from just before
//! the switch until verification ends, every health URL is probed every [`INTERVAL`] on a
//! fresh connection with a [`TIMEOUT`], and the run reports how many probes failed and the
//! longest time without a successful answer.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Time between two probes of one URL (issue: every 50–100 ms).
pub const INTERVAL: Duration = Duration::from_millis(75);
/// A probe that takes longer failed.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// One probe: when it was sent (since the start) and whether it got a 2xx answer.
#[derive(Debug, Clone, Copy)]
struct Sample {
    url: usize,
    sent: Duration,
    ok: bool,
}

/// What the probes saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub probes: u64,
    pub failed: u64,
    /// The longest time any URL went without a successful probe (from the start, between
    /// successes, and up to the stop), in milliseconds.
    pub longest_gap_ms: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "availability: {} of {} probes failed, longest gap {} ms",
            self.failed, self.probes, self.longest_gap_ms
        )
    }
}

/// Probes running in the background; [`Probe::stop`] ends them and gives the [`Report`].
pub struct Probe {
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    tickers: Vec<JoinHandle<()>>,
    in_flight: Arc<Mutex<Vec<JoinHandle<()>>>>,
    urls: usize,
}

/// A client that opens a new connection for every request (no idle pool), as a user arriving
/// during the switch would.
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("tj-deploy/", env!("CARGO_PKG_VERSION"), " availability"))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| Error::failed(format!("http client: {e}")))
}

impl Probe {
    /// Starts probing each of `urls` every [`INTERVAL`]. Probes overlap when one is slow, so a
    /// hanging request never delays the next.
    pub fn start(urls: &[String], client: &reqwest::Client) -> Probe {
        let started = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let in_flight: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let tickers = urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let (url, client, samples, in_flight) =
                    (url.clone(), client.clone(), samples.clone(), in_flight.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(INTERVAL);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let (url, client, samples) = (url.clone(), client.clone(), samples.clone());
                        let sent = started.elapsed();
                        let h = tokio::spawn(async move {
                            let ok = matches!(
                                tokio::time::timeout(TIMEOUT, client.get(&url).header("Connection", "close").send()).await,
                                Ok(Ok(r)) if r.status().is_success()
                            );
                            if let Ok(mut s) = samples.lock() {
                                s.push(Sample { url: i, sent, ok });
                            }
                        });
                        if let Ok(mut f) = in_flight.lock() {
                            f.retain(|h| !h.is_finished());
                            f.push(h);
                        }
                    }
                })
            })
            .collect();
        Probe {
            started,
            samples,
            tickers,
            in_flight,
            urls: urls.len(),
        }
    }

    /// Stops sending, waits for the probes in flight (at most [`TIMEOUT`]) and reports.
    pub async fn stop(self) -> Report {
        let stopped = self.started.elapsed();
        for t in &self.tickers {
            t.abort();
        }
        let pending: Vec<JoinHandle<()>> = self
            .in_flight
            .lock()
            .map(|mut f| f.drain(..).collect())
            .unwrap_or_default();
        for h in pending {
            let _ = h.await;
        }
        let samples = self.samples.lock().map(|s| s.clone()).unwrap_or_default();
        report(&samples, self.urls, stopped)
    }
}

/// One probe of a loop run on a host ([`crate::remote::commands::probe_loop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSample {
    /// When it was sent, in ms since the loop started.
    pub sent_ms: u64,
    pub ok: bool,
    pub latency_ms: u64,
}

/// A probe loop's output: its samples and, when it ended by itself, when (ms since its start).
/// Lines it cannot read are skipped. The watch's synthetic probes can reuse this.
pub fn parse_loop(text: &str) -> (Vec<HostSample>, Option<u64>) {
    let mut samples = Vec::new();
    let mut end = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["probe", sent, ok, latency] => {
                if let (Ok(sent_ms), Ok(latency_ms)) = (sent.parse(), latency.parse()) {
                    samples.push(HostSample {
                        sent_ms,
                        ok: *ok == "1",
                        latency_ms,
                    });
                }
            }
            ["probe-end", ms] => end = ms.parse().ok(),
            _ => {}
        }
    }
    (samples, end)
}

/// One [`Report`] over several hosts' loops: counts add up, the longest gap is the longest of
/// any host (each measured on its own clock, up to its own end, else `window`).
pub fn report_of_loops(loops: &[(Vec<HostSample>, Option<u64>)], window: Duration) -> Report {
    let mut total = Report::default();
    for (samples, end) in loops {
        let samples: Vec<Sample> = samples
            .iter()
            .map(|s| Sample {
                url: 0,
                sent: Duration::from_millis(s.sent_ms),
                ok: s.ok,
            })
            .collect();
        let stopped = end.map(Duration::from_millis).unwrap_or(window);
        let r = report(&samples, 1, stopped);
        total.probes += r.probes;
        total.failed += r.failed;
        total.longest_gap_ms = total.longest_gap_ms.max(r.longest_gap_ms);
    }
    total
}

/// The report from the samples: a gap runs from the start (or a success) to the next success
/// (or the stop), per URL, by send time.
fn report(samples: &[Sample], urls: usize, stopped: Duration) -> Report {
    let mut r = Report {
        probes: samples.len() as u64,
        failed: samples.iter().filter(|s| !s.ok).count() as u64,
        longest_gap_ms: 0,
    };
    for url in 0..urls {
        let mut ok: Vec<Duration> = samples
            .iter()
            .filter(|s| s.url == url && s.ok)
            .map(|s| s.sent)
            .collect();
        ok.sort();
        let mut last = Duration::ZERO;
        for t in ok.into_iter().chain([stopped]) {
            r.longest_gap_ms = r.longest_gap_ms.max(t.saturating_sub(last).as_millis() as u64);
            last = t;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(url: usize, ms: u64, ok: bool) -> Sample {
        Sample {
            url,
            sent: Duration::from_millis(ms),
            ok,
        }
    }

    #[test]
    fn gaps_count_from_the_start_between_successes_and_to_the_stop() {
        let samples = [
            s(0, 0, true),
            s(0, 75, false),
            s(0, 150, false),
            s(0, 225, true),
            s(1, 10, true),
            s(1, 85, true),
        ];
        let r = report(&samples, 2, Duration::from_millis(300));
        assert_eq!(r.probes, 6);
        assert_eq!(r.failed, 2);
        assert_eq!(r.longest_gap_ms, 225, "0 → 225 on the first URL");
        assert_eq!(r.to_string(), "availability: 2 of 6 probes failed, longest gap 225 ms");
        let none = report(&[], 1, Duration::from_millis(500));
        assert_eq!(none.longest_gap_ms, 500, "never answered: the whole window");
    }

    #[test]
    fn loops_on_hosts_add_up() {
        let a = parse_loop("probe 0 1 3\nprobe 75 0 2000\nnoise\nprobe 150 1 4\nprobe-end 200\n");
        assert_eq!(a.0.len(), 3);
        assert_eq!(a.1, Some(200));
        assert_eq!(
            a.0[1],
            HostSample {
                sent_ms: 75,
                ok: false,
                latency_ms: 2000
            }
        );
        let b = parse_loop("probe 10 1 1\n");
        let r = report_of_loops(&[a, b], Duration::from_millis(900));
        assert_eq!((r.probes, r.failed), (4, 1));
        assert_eq!(r.longest_gap_ms, 890, "the second loop never ended: up to the window");
    }

    /// Real probes against a server that answers, then goes away, then comes back.
    #[tokio::test]
    async fn probes_a_real_server_through_an_outage() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = |listener: tokio::net::TcpListener| {
            tokio::spawn(async move {
                loop {
                    let Ok((mut c, _)) = listener.accept().await else {
                        return;
                    };
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        let _ = c.read(&mut buf).await;
                        let _ = c
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                            .await;
                    });
                }
            })
        };
        let server = serve(listener);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let probe = Probe::start(&[format!("http://{addr}/api/health")], &client().unwrap());
        tokio::time::sleep(Duration::from_millis(400)).await;
        server.abort();
        let _ = server.await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let server = serve(tokio::net::TcpListener::bind(addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = probe.stop().await;
        server.abort();
        assert!(r.probes >= 12, "{r}");
        assert!(r.failed >= 5, "the outage shows: {r}");
        assert!(r.failed < r.probes, "{r}");
        assert!((550..1500).contains(&r.longest_gap_ms), "{r}");
    }
}
