//! `polctl-bench load --url URL [--bodies FILE] [--rates 1000,5000,10000,max] [--seconds S]
//! [--connections N]`: an open-loop HTTP/1.1 load generator for the decision server, so the
//! latency at a fixed request rate can be measured (wrk holds no rate, and wrk2 is not packaged
//! here).
//!
//! - Request `i` of a run is due at `start + i / rate`, whichever connection sends it. When
//!   every connection is busy past a request's due time, its latency counts from the due time
//!   (the wait is the server's doing: no coordinated omission, as in wrk2). When a connection
//!   was free before the due time, the latency counts from the moment it sent, so the timer's
//!   millisecond granularity is not charged to the server.
//! - `max` is a closed loop: every connection sends its next request as soon as the last one is
//!   answered (the maximum throughput, as wrk measures it).
//! - `--bodies FILE` holds one JSON request body a line (POSTed in turn); without it, GET.
//! - A response that is not 200 is counted as an error; a broken connection ends the run with an
//!   error. Loopback only: the URL must name 127.0.0.1 or localhost.
//!
//! One thread (a current-thread tokio runtime), so the server keeps the rest of the machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one run at one rate measured.
pub struct RunFigures {
    pub sent: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Latencies in microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl RunFigures {
    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1] as f64
    }
}

struct Target {
    address: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must start with http:// (loopback only)")?;
    let (address, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    if host != "127.0.0.1" && host != "localhost" {
        return Err(format!(
            "--url names `{host}`: the load generator targets loopback only"
        ));
    }
    let address = if address.contains(':') {
        address.to_owned()
    } else {
        format!("{address}:80")
    };
    Ok(Target {
        address,
        path: path.to_owned(),
    })
}

/// The raw requests, one per body (or one GET).
fn requests(target: &Target, bodies: &[String]) -> Vec<Vec<u8>> {
    if bodies.is_empty() {
        return vec![format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            target.path, target.address
        )
        .into_bytes()];
    }
    bodies
        .iter()
        .map(|body| {
            format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                target.path,
                target.address,
                body.len()
            )
            .into_bytes()
        })
        .collect()
}

/// Reads one response; returns its status. Responses must carry Content-Length (the server's
/// always do).
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<u16, String> {
    buffer.clear();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..end]).map_err(|_| "a non-UTF-8 head")?;
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or("a response without a status")?;
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .ok_or("a response without Content-Length")?;
            while buffer.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("the server closed the connection".to_owned());
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".to_owned());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One run: `rate` requests a second (None: closed loop) for `seconds`, over `connections`.
pub fn run(
    url: &str,
    bodies: &[String],
    rate: Option<u64>,
    seconds: f64,
    connections: usize,
) -> Result<RunFigures, String> {
    let target = parse_url(url)?;
    let requests = Arc::new(requests(&target, bodies));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let total = rate.map(|r| (r as f64 * seconds) as u64);
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now() + Duration::from_millis(50);
        let deadline = start + Duration::from_secs_f64(seconds);
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let mut stream = TcpStream::connect(&target.address)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", target.address))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (next, requests) = (next.clone(), requests.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut buffer = Vec::with_capacity(16 * 1024);
                let mut free_at = Instant::now();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let due = match (rate, total) {
                        (Some(rate), Some(total)) => {
                            if i >= total {
                                break;
                            }
                            start + Duration::from_nanos(i * 1_000_000_000 / rate.max(1))
                        }
                        _ => {
                            let now = Instant::now().max(start);
                            if now >= deadline {
                                break;
                            }
                            now
                        }
                    };
                    tokio::time::sleep_until(due.into()).await;
                    let sent = Instant::now();
                    let from = if free_at > due { due } else { sent };
                    let request = &requests[(i % requests.len() as u64) as usize];
                    stream.write_all(request).await.map_err(|e| e.to_string())?;
                    let status = read_response(&mut stream, &mut buffer).await?;
                    free_at = Instant::now();
                    latencies.push(free_at.duration_since(from).as_micros() as u64);
                    if status != 200 {
                        errors += 1;
                    }
                }
                Ok::<_, String>((latencies, errors))
            }));
        }
        let mut figures = RunFigures {
            sent: 0,
            errors: 0,
            seconds: 0.0,
            latencies_us: Vec::new(),
        };
        for task in tasks {
            let (latencies, errors) = task.await.map_err(|e| e.to_string())??;
            figures.sent += latencies.len() as u64;
            figures.errors += errors;
            figures.latencies_us.extend(latencies);
        }
        figures.seconds = start.elapsed().as_secs_f64();
        figures.latencies_us.sort_unstable();
        Ok(figures)
    })
}

fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The `load` subcommand: a Markdown table row per rate.
pub fn load_command(args: &[String]) -> Result<(), String> {
    let url = value(args, "--url").ok_or("--url URL is required")?;
    let bodies: Vec<String> = match value(args, "--bodies") {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read `{path}`: {e}"))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    let seconds: f64 = value(args, "--seconds")
        .map_or(Ok(10.0), str::parse)
        .map_err(|_| "--seconds takes a number")?;
    let connections: usize = value(args, "--connections")
        .map_or(Ok(64), str::parse)
        .map_err(|_| "--connections takes a number")?;
    let rates: Vec<Option<u64>> = value(args, "--rates")
        .unwrap_or("1000,5000,10000,max")
        .split(',')
        .map(|r| match r {
            "max" => Ok(None),
            r => r
                .parse()
                .map(Some)
                .map_err(|_| format!("--rates: `{r}` is not a number or `max`")),
        })
        .collect::<Result<_, _>>()?;
    println!("| rate | requests | achieved | errors | p50 | p90 | p99 | p99.9 | max |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for rate in rates {
        let figures = run(url, &bodies, rate, seconds, connections)?;
        let ms = |us: f64| format!("{:.2} ms", us / 1000.0);
        println!(
            "| {} | {} | {:.0}/s | {} | {} | {} | {} | {} | {} |",
            rate.map_or("max (closed loop)".to_owned(), |r| format!("{r}/s")),
            figures.sent,
            figures.sent as f64 / figures.seconds,
            figures.errors,
            ms(figures.percentile(50.0)),
            ms(figures.percentile(90.0)),
            ms(figures.percentile(99.0)),
            ms(figures.percentile(99.9)),
            ms(figures.latencies_us.last().copied().unwrap_or(0) as f64),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_loopback_http() {
        let target = parse_url("http://127.0.0.1:18585/v1/decide").expect("loopback");
        assert_eq!(
            (target.address.as_str(), target.path.as_str()),
            ("127.0.0.1:18585", "/v1/decide")
        );
        assert_eq!(
            parse_url("http://localhost").expect("loopback").address,
            "localhost:80"
        );
        assert!(parse_url("http://10.0.0.1:80/").is_err());
        assert!(parse_url("https://127.0.0.1/").is_err());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let figures = RunFigures {
            sent: 100,
            errors: 0,
            seconds: 1.0,
            latencies_us: (1..=100).collect(),
        };
        assert_eq!(figures.percentile(50.0), 50.0);
        assert_eq!(figures.percentile(99.0), 99.0);
        assert_eq!(figures.percentile(100.0), 100.0);
    }

    /// A real round trip: a loopback listener answering every request with a fixed response,
    /// at a fixed rate; every request answered, none counted as an error.
    #[test]
    fn a_fixed_rate_run_sends_every_request() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            for stream in listener.incoming().take(2) {
                let mut stream = stream.expect("stream");
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 4096];
                    let mut seen = Vec::new();
                    while let Ok(n) = stream.read(&mut buffer) {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..n]);
                        // Requests end with a body of `{}`: answer each one complete.
                        while let Some(end) = find(&seen, b"{}") {
                            seen.drain(..end + 2);
                            let _ =
                                stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                        }
                    }
                });
            }
        });
        let figures = run(
            &format!("http://{address}/v1/decide"),
            &["{}".to_owned()],
            Some(400),
            0.5,
            2,
        )
        .expect("run");
        assert_eq!((figures.sent, figures.errors), (200, 0));
        assert_eq!(figures.latencies_us.len(), 200);
    }
}
