//! Parsers for configuration values: durations, byte sizes, counts and addresses.
//!
//! Each returns a message that says what is allowed, so the caller can name the key.

use std::net::SocketAddr;
use std::time::Duration;

/// Splits `16MiB` into 16 and `MiB`; `allowed` is the message when there is no number.
fn number_and_unit<'a>(text: &'a str, allowed: &str) -> Result<(u64, &'a str), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value = number.parse().map_err(|_| allowed.to_string())?;
    Ok((value, unit.trim()))
}

/// Parses `500ms`, `10s`, `2m`, `1h` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const ALLOWED: &str = "a duration such as 500ms, 10s, 2m or 1h";
    let (value, unit) = number_and_unit(text, ALLOWED)?;
    let millis = match unit {
        "ms" => Some(value),
        "" | "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        _ => None,
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| ALLOWED.to_string())
}

/// Parses a byte size: `65536`, `64KiB`, `16MiB`, `1GiB` (also `KB`/`MB`/`GB` as powers of 1000).
pub fn parse_size(text: &str) -> Result<u64, String> {
    const ALLOWED: &str = "a size in bytes such as 65536, 64KiB, 16MiB or 1GiB";
    let (value, unit) = number_and_unit(text, ALLOWED)?;
    let factor: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(ALLOWED.to_string()),
    };
    value.checked_mul(factor).ok_or_else(|| ALLOWED.to_string())
}

/// Parses retention rules: `PATTERN=COUNT/AGE[,...]`, such as `chat.>=200/24h`.
pub fn parse_retention_rules(
    text: &str,
) -> Result<Vec<(weir_pubsub::TopicPattern, weir_pubsub::Retention)>, String> {
    const ALLOWED: &str = "PATTERN=COUNT/AGE[,...] such as chat.>=200/24h,ticks.*=10/1m";
    text.split(',')
        .map(str::trim)
        .filter(|rule| !rule.is_empty())
        .map(|rule| {
            let (pattern, limits) = rule.split_once('=').ok_or(ALLOWED)?;
            let (count, age) = limits.split_once('/').ok_or(ALLOWED)?;
            let pattern = weir_pubsub::TopicPattern::new(pattern.trim())
                .map_err(|e| format!("{ALLOWED} ({e})"))?;
            let max_messages = parse_count(count, 0, 10_000_000)?;
            let max_age = parse_duration(age)?;
            Ok((
                pattern,
                weir_pubsub::Retention {
                    max_messages: max_messages as usize,
                    max_age,
                },
            ))
        })
        .collect()
}

/// Parses a whole number within `min..=max`.
pub fn parse_count(text: &str, min: u64, max: u64) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("a whole number from {min} to {max}"))
}

/// Parses `HOST:PORT` with a literal IP address.
pub fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| "an IP address and port such as 127.0.0.1:7070 or [::1]:7070".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("16 parsecs").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn counts_and_addresses() {
        assert_eq!(parse_count("8", 1, 10), Ok(8));
        assert!(parse_count("0", 1, 10).is_err());
        assert!(parse_count("x", 1, 10).is_err());
        assert!(parse_socket_addr("127.0.0.1:7070").is_ok());
        assert!(parse_socket_addr("[::1]:80").is_ok());
        assert!(parse_socket_addr("localhost").is_err());
    }

    #[test]
    fn retention_rules_keep_their_order() {
        let rules = parse_retention_rules(" chat.>=200/24h, ticks.*=10/1m ,").unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].0.as_str(), "chat.>");
        assert_eq!(rules[0].1.max_messages, 200);
        assert_eq!(rules[0].1.max_age, Duration::from_secs(24 * 3600));
        assert_eq!(rules[1].1.max_age, Duration::from_secs(60));
        assert!(parse_retention_rules("").unwrap().is_empty());
        for bad in [
            "chat.>",
            "chat.>=200",
            "chat.>=lots/1h",
            "bad topic=1/1s",
            "a=1/forever",
        ] {
            assert!(parse_retention_rules(bad).is_err(), "{bad}");
        }
    }
}
