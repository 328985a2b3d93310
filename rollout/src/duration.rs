//! Durations as written in plans (`500us`, `5ms`, `30s`, `10m`, `1h`, `1d`) and instants as
//! the rollout code sees them: milliseconds since the Unix epoch, passed in by the caller.

/// Milliseconds since the Unix epoch. The rollout code has no clock: the server passes the
/// wall clock, the simulator the time of the traffic line being replayed.
pub type Millis = i64;

/// Parses a duration into microseconds: a number and a unit, or several (`1h30m`, as
/// [`format_millis`] writes them). A bare number is refused: the unit is what keeps
/// `max_latency_p99 = "5"` from meaning five seconds to one reader and five milliseconds to
/// another.
pub fn parse_micros(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(
            "an empty duration; write it like `5ms`, `30s`, `10m`, `1h` or `1d`".to_owned(),
        );
    }
    let mut rest = text;
    let mut total = 0.0;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| {
                format!("`{text}` has no unit; write it like `5ms`, `30s`, `10m`, `1h` or `1d`")
            })?;
        let (number, after) = rest.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration (a number, then a unit)"))?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale = match unit {
            "us" | "µs" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            "m" => 60e6,
            "h" => 3_600e6,
            "d" => 86_400e6,
            _ => {
                return Err(format!(
                    "`{unit}` is not a unit of time; use `us`, `ms`, `s`, `m`, `h` or `d`"
                ))
            }
        };
        total += value * scale;
        rest = next;
    }
    if !total.is_finite() || total > 1e15 {
        return Err(format!("`{text}` is too long"));
    }
    Ok(total.round() as u64)
}

/// Parses a duration into milliseconds (sub-millisecond parts are rounded).
pub fn parse_millis(text: &str) -> Result<i64, String> {
    parse_micros(text).map(|us| (us / 1000) as i64)
}

/// A duration in milliseconds, written the way plans write them (`90m` as `1h30m`).
pub fn format_millis(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut rest = ms.unsigned_abs();
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if rest > 0 {
        out.push_str(&format!("{rest}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_micros("5ms"), Ok(5_000));
        assert_eq!(parse_micros("250us"), Ok(250));
        assert_eq!(parse_micros("1.5s"), Ok(1_500_000));
        assert_eq!(parse_millis("10m"), Ok(600_000));
        assert_eq!(parse_millis("1d"), Ok(86_400_000));
        assert!(parse_micros("5").unwrap_err().contains("no unit"));
        assert!(parse_micros("5 weeks").is_err());
        assert_eq!(format_millis(5_400_000), "1h30m");
        assert_eq!(format_millis(1_500), "1s500ms");
        assert_eq!(parse_millis("1h30m"), Ok(5_400_000));
        assert_eq!(parse_millis(&format_millis(93_784_005)), Ok(93_784_005));
        assert!(parse_micros("").is_err());
        assert!(parse_micros("m").is_err());
    }
}
