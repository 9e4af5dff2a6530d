//! A stand-in Slack incoming webhook: records every body, can answer 429 with Retry-After
//! first, and checks payloads against Slack's published Block Kit limits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct SlackReceiver {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<String>>>,
}

impl SlackReceiver {
    /// `throttle`: how many first requests get `429 Retry-After: 1`.
    pub fn start(throttle: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            let mut count = 0usize;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                count += 1;
                let answer = if count <= throttle {
                    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    seen.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        // The path stands for the secret part of a real webhook URL.
        SlackReceiver {
            url: format!("http://127.0.0.1:{port}/services/T000/B000/sEcReTwEbHoOk"),
            bodies,
        }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Breaches of Slack's Block Kit limits in a webhook payload (empty when valid).
pub fn block_kit_violations(p: &serde_json::Value) -> Vec<String> {
    let mut v = Vec::new();
    let chars = |x: &serde_json::Value| x.as_str().map(|s| s.chars().count()).unwrap_or(0);
    if p["text"].as_str().is_none_or(str::is_empty) {
        v.push("no text fallback".to_string());
    }
    let blocks = p["blocks"].as_array().cloned().unwrap_or_default();
    if blocks.len() > 50 {
        v.push(format!("{} blocks > 50", blocks.len()));
    }
    for (i, b) in blocks.iter().enumerate() {
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" || chars(&b["text"]["text"]) > 150 {
                    v.push(format!("block {i}: header must be plain_text ≤ 150"));
                }
            }
            Some("section") => {
                if chars(&b["text"]["text"]) > 3000 {
                    v.push(format!("block {i}: section text > 3000"));
                }
                if let Some(fields) = b["fields"].as_array() {
                    if fields.len() > 10 {
                        v.push(format!("block {i}: {} fields > 10", fields.len()));
                    }
                    if fields.iter().any(|f| chars(&f["text"]) > 2000) {
                        v.push(format!("block {i}: a field > 2000"));
                    }
                }
                if b["text"].is_null() && b["fields"].is_null() {
                    v.push(format!("block {i}: section without text or fields"));
                }
            }
            Some("actions") => {
                for e in b["elements"].as_array().into_iter().flatten() {
                    if chars(&e["text"]["text"]) > 75 || chars(&e["url"]) > 3000 {
                        v.push(format!("block {i}: button text > 75 or url > 3000"));
                    }
                }
            }
            other => v.push(format!("block {i}: unexpected type {other:?}")),
        }
    }
    v
}
