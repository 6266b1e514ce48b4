//! Parsers for configuration values: durations, byte sizes, counts and addresses.
//!
//! Each returns a message that says what is allowed, so the caller can name the key.

use std::collections::{BTreeMap, BTreeSet};
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

/// Parses `500ms`, `10s`, `2m`, `1h`, `7d` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const ALLOWED: &str = "a duration such as 500ms, 10s, 2m, 1h or 7d";
    let (value, unit) = number_and_unit(text, ALLOWED)?;
    let millis = match unit {
        "ms" => Some(value),
        "" | "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        "d" => value.checked_mul(86_400_000),
        _ => None,
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| ALLOWED.to_string())
}

/// Parses how long to keep something: a duration, or `forever` (`None`).
pub fn parse_keep(text: &str) -> Result<Option<Duration>, String> {
    if text.trim() == "forever" {
        return Ok(None);
    }
    parse_duration(text)
        .map(Some)
        .map_err(|_| "a duration such as 1h, 24h or 7d, or forever".to_string())
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

/// `QUEUE=N[,...]`: most jobs running at once per queue.
pub fn parse_queue_limits(text: &str) -> Result<BTreeMap<String, u32>, String> {
    let allowed = "QUEUE=N pairs separated by commas, such as email=4,crawl=2 (N from 1 to 100000)";
    let mut limits = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (queue, limit) = entry.split_once('=').ok_or_else(|| allowed.to_string())?;
        let limit = parse_count(limit.trim(), 1, 100_000).map_err(|_| allowed.to_string())?;
        if queue.trim().is_empty() {
            return Err(allowed.to_string());
        }
        limits.insert(queue.trim().to_string(), limit as u32);
    }
    Ok(limits)
}

/// `QUEUE=KIND|KIND[,...]`: the kinds each listed queue accepts.
pub fn parse_queue_kinds(text: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let allowed =
        "QUEUE=KIND|KIND pairs separated by commas, such as email=send_welcome|send_reset";
    let mut rules = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (queue, kinds) = entry.split_once('=').ok_or_else(|| allowed.to_string())?;
        let kinds: BTreeSet<String> = kinds
            .split('|')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        if queue.trim().is_empty() || kinds.is_empty() {
            return Err(allowed.to_string());
        }
        rules.insert(queue.trim().to_string(), kinds);
    }
    Ok(rules)
}

/// `NAME CRON QUEUE/KIND [PAYLOAD]` entries separated by `;`.
pub fn parse_schedules(text: &str) -> Result<Vec<weir_jobs::Schedule>, String> {
    let mut schedules: Vec<weir_jobs::Schedule> = Vec::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let schedule = parse_schedule(entry).map_err(|reason| {
            format!("`{entry}`: {reason}; entries are NAME [CRON_TZ=ZONE] CRON QUEUE/KIND [PAYLOAD] separated by ';', e.g. cleanup */10 * * * * maintenance/echo {{}}")
        })?;
        if schedules.iter().any(|s| s.name == schedule.name) {
            return Err(format!("schedule name `{}` is used twice", schedule.name));
        }
        schedules.push(schedule);
    }
    Ok(schedules)
}

fn parse_schedule(entry: &str) -> Result<weir_jobs::Schedule, String> {
    let mut words = entry.split_whitespace();
    let name = words.next().ok_or("no name")?.to_string();
    let mut first = words.next().ok_or("no cron expression")?;
    // An optional time zone before the fields: CRON_TZ=Europe/Berlin (or TZ=…).
    let zone = match first.starts_with("CRON_TZ=") || first.starts_with("TZ=") {
        true => {
            let zone = first;
            first = words
                .next()
                .ok_or("no cron expression after the time zone")?;
            Some(zone)
        }
        false => None,
    };
    let fields = if first.starts_with('@') {
        first.to_string()
    } else {
        let mut fields = vec![first];
        for _ in 0..4 {
            fields.push(words.next().ok_or("the cron expression needs 5 fields")?);
        }
        fields.join(" ")
    };
    let cron_text = match zone {
        Some(zone) => format!("{zone} {fields}"),
        None => fields,
    };
    let cron: weir_jobs::cron::Cron = cron_text
        .parse()
        .map_err(|e: weir_jobs::cron::CronError| e.to_string())?;
    let target = words.next().ok_or("no QUEUE/KIND")?;
    let (queue, kind) = target
        .split_once('/')
        .ok_or("the job is named QUEUE/KIND")?;
    let rest: Vec<&str> = words.collect();
    let payload = if rest.is_empty() {
        "{}".to_string()
    } else {
        rest.join(" ")
    };
    let payload = serde_json::value::RawValue::from_string(payload)
        .map_err(|e| format!("the payload is not JSON: {e}"))?;
    let job = weir_jobs::NewJob::new(queue, kind, payload);
    weir_jobs::validate(&job, &weir_jobs::JobsConfig::default()).map_err(|e| e.to_string())?;
    Ok(weir_jobs::Schedule { name, cron, job })
}

/// `http.allowed_hosts`: host names separated by commas, or `*`.
pub fn parse_host_list(text: &str) -> Result<Vec<String>, String> {
    let allowed = "host names separated by commas, such as weir.internal,weir.example.com, or *";
    text.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| {
            let well_formed = host == "*"
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            well_formed
                .then(|| host.to_ascii_lowercase())
                .ok_or_else(|| allowed.to_string())
        })
        .collect()
}

/// `http.cors_origins`: origins (`scheme://host[:port]`, no path) separated by commas, or `*`.
pub fn parse_origin_list(text: &str) -> Result<Vec<String>, String> {
    let allowed =
        "origins separated by commas, such as https://app.example.com,http://localhost:5173, or *";
    text.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            if origin == "*" {
                return Ok(origin.to_string());
            }
            let rest = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .ok_or_else(|| allowed.to_string())?;
            let well_formed = !rest.is_empty()
                && rest.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']')
                });
            well_formed
                .then(|| origin.to_ascii_lowercase())
                .ok_or_else(|| allowed.to_string())
        })
        .collect()
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
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn keeps() {
        assert_eq!(parse_keep("forever"), Ok(None));
        assert_eq!(parse_keep("24h"), Ok(Some(Duration::from_secs(86_400))));
        assert_eq!(parse_keep("0s"), Ok(Some(Duration::ZERO)));
        assert!(parse_keep("always").unwrap_err().contains("forever"));
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

    #[test]
    fn queue_limits_parse_and_explain() {
        let limits = parse_queue_limits("email=4, crawl=2").unwrap();
        assert_eq!(limits.get("email"), Some(&4));
        assert_eq!(limits.get("crawl"), Some(&2));
        assert!(parse_queue_limits("").unwrap().is_empty());
        for bad in ["email", "email=0", "=3", "email=x"] {
            assert!(
                parse_queue_limits(bad).unwrap_err().contains("QUEUE=N"),
                "{bad}"
            );
        }
    }

    #[test]
    fn queue_kinds_parse() {
        let rules = parse_queue_kinds("email=send_welcome|send_reset, crawl=crawl").unwrap();
        assert_eq!(rules["email"].len(), 2);
        assert!(rules["crawl"].contains("crawl"));
        for bad in ["email", "email=", "=x"] {
            assert!(parse_queue_kinds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schedules_parse_cron_lists_and_payloads() {
        let schedules = parse_schedules(
            "cleanup 0,30 * * * * maintenance/echo {\"all\": true}; nightly @daily reports/build",
        )
        .unwrap();
        assert_eq!(schedules.len(), 2);
        assert_eq!(schedules[0].name, "cleanup");
        assert_eq!(schedules[0].cron.to_string(), "0,30 * * * *");
        assert_eq!(schedules[0].job.queue, "maintenance");
        assert_eq!(schedules[0].job.payload.get(), "{\"all\": true}");
        assert_eq!(schedules[1].job.kind, "build");
        assert_eq!(schedules[1].job.payload.get(), "{}");
        let berlin =
            parse_schedules("digest CRON_TZ=Europe/Berlin 0 9 * * mon-fri mail/send").unwrap();
        assert_eq!(
            berlin[0].cron.to_string(),
            "CRON_TZ=Europe/Berlin 0 9 * * mon-fri"
        );
        assert_eq!(berlin[0].job.kind, "send");
        for (bad, needle) in [
            ("x CRON_TZ=Nowhere/Land @daily q/k", "IANA"),
            ("x 61 * * * * q/k", "minute 61"),
            ("x @daily qk", "QUEUE/KIND"),
            ("x @daily q/k {oops", "not JSON"),
            ("x @daily q/k; x @hourly q/k", "used twice"),
        ] {
            let error = parse_schedules(bad).unwrap_err();
            assert!(error.contains(needle), "{bad}: {error}");
        }
    }

    #[test]
    fn host_and_origin_lists() {
        assert_eq!(
            parse_host_list(" Weir.Internal , * ").unwrap(),
            ["weir.internal", "*"]
        );
        assert!(parse_host_list("weir.internal/admin").is_err());
        assert_eq!(
            parse_origin_list("https://App.example.com,http://localhost:5173").unwrap(),
            ["https://app.example.com", "http://localhost:5173"]
        );
        for bad in ["app.example.com", "https://app.example.com/path", "ftp://x"] {
            assert!(parse_origin_list(bad).is_err(), "{bad}");
        }
    }
}
