//! Prometheus as a watch source: instant queries (`GET /api/v1/query`). `NaN`, `±Inf`, an empty
//! vector and an answer without a number are no data (`Ok(None)`); an `error` status, an HTTP
//! failure or an unreachable server is the source failing (`Err`): reported, never a rollback.

use std::time::Duration;

use serde_json::Value;

/// A query that takes longer failed.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `query` against `base` (`http://prometheus:9090`).
pub async fn query(client: &reqwest::Client, base: &str, query: &str) -> Result<Option<f64>, String> {
    let url = format!("{base}/api/v1/query");
    let full = reqwest::Url::parse_with_params(&url, &[("query", query)]).map_err(|e| format!("{url}: {e}"))?;
    let resp = client
        .get(full)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", crate::health::describe_http_error(&e)))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| format!("{url}: HTTP {status}: {e}"))?;
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{url}: HTTP {status}, not a Prometheus answer ({e})"))?;
    value(&body)
}

/// The one number of an instant query's answer (the largest, when the vector holds several).
pub fn value(body: &Value) -> Result<Option<f64>, String> {
    if body["status"] != "success" {
        let kind = body["errorType"].as_str().unwrap_or("error");
        let msg = body["error"].as_str().unwrap_or("no message");
        return Err(format!("query failed: {kind}: {}", crate::ui::prefix(msg, 200)));
    }
    let data = &body["data"];
    let number = |pair: &Value| -> Option<f64> {
        let v: f64 = pair.get(1)?.as_str()?.parse().ok()?;
        v.is_finite().then_some(v)
    };
    Ok(match data["resultType"].as_str() {
        Some("scalar") => number(&data["result"]),
        Some("vector") => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| number(&s["value"]))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x)))),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vector(values: &[&str]) -> Value {
        let result: Vec<Value> = values
            .iter()
            .map(|v| json!({"metric": {}, "value": [1.0, v]}))
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    #[test]
    fn nan_inf_and_empty_are_no_data() {
        assert_eq!(value(&vector(&["0.25"])), Ok(Some(0.25)));
        assert_eq!(value(&vector(&["0.1", "0.3"])), Ok(Some(0.3)));
        assert_eq!(value(&vector(&["NaN"])), Ok(None));
        assert_eq!(value(&vector(&["+Inf"])), Ok(None));
        assert_eq!(value(&vector(&[])), Ok(None));
        let scalar = json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "2"]}});
        assert_eq!(value(&scalar), Ok(Some(2.0)));
        let err = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        assert_eq!(value(&err), Err("query failed: bad_data: parse error".to_string()));
    }
}
