//! Throughput under load: `wrk --latency` against one URL, its output parsed.

use std::process::Command;

pub const CONNECTIONS: u32 = 16;
pub const THREADS: u32 = 2;

#[derive(Clone, Debug, Default)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    /// Milliseconds.
    pub p50: f64,
    pub p99: f64,
    pub requests: u64,
    /// Non-2xx/3xx answers plus socket errors: should be 0.
    pub errors: u64,
}

/// Runs wrk for `seconds` against `url` and parses its report.
pub fn wrk(url: &str, seconds: u32) -> WrkResult {
    let output = Command::new("wrk")
        .args([
            "--latency",
            "-t",
            &THREADS.to_string(),
            "-c",
            &CONNECTIONS.to_string(),
            "-d",
            &format!("{seconds}s"),
            url,
        ])
        .output()
        .expect("wrk is on PATH (scripts/bench.sh installs it: apt-get install -y wrk)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&text).unwrap_or_else(|| panic!("cannot read wrk's report:\n{text}"))
}

/// A wrk duration (`812.00us`, `2.35ms`, `1.02s`, `1.5m`) in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        "h" => number * 3600e3,
        _ => return None,
    })
}

fn parse(text: &str) -> Option<WrkResult> {
    let mut result = WrkResult::default();
    let mut in_distribution = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if in_distribution && fields.len() == 2 && fields[0].ends_with('%') {
            match fields[0] {
                "50%" => result.p50 = millis(fields[1])?,
                "99%" => {
                    result.p99 = millis(fields[1])?;
                    in_distribution = false;
                }
                _ => {}
            }
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            result.requests_per_sec = rest.trim().parse().ok()?;
        } else if line.contains("requests in") {
            result.requests = fields.first()?.parse().ok()?;
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            result.errors += rest.trim().parse::<u64>().ok()?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in rest.split(',') {
                if let Some(n) = part.split_whitespace().nth(1) {
                    result.errors += n.parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    (result.requests_per_sec > 0.0).then_some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_report() {
        let report = "Running 10s test @ http://127.0.0.1:1/\n  2 threads and 16 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   156.63us  101.68us   9.54ms   94.42%\n    Req/Sec    50.75k     3.21k   58.02k    70.50%\n  Latency Distribution\n     50%  136.00us\n     75%  168.00us\n     90%  215.00us\n     99%    1.02ms\n  1010043 requests in 10.00s, 124.26MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\nRequests/sec: 100992.25\nTransfer/sec:     12.42MB\n";
        let r = parse(report).unwrap();
        assert_eq!(r.requests, 1_010_043);
        assert!((r.p50 - 0.136).abs() < 1e-9);
        assert!((r.p99 - 1.02).abs() < 1e-9);
        assert!((r.requests_per_sec - 100_992.25).abs() < 1e-6);
        assert_eq!(r.errors, 3);
    }
}
