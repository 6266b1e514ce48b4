//! The hub's contract: offsets, replay, gaps, wildcards, slow subscribers.

#![allow(missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use futures_lite::{future, StreamExt};
use weir_pubsub::{
    Event, Hub, HubConfig, Position, PublishError, Retention, SlowSubscriberPolicy, StartFrom,
    SubscribeError, Subscription, TopicPattern,
};

fn hub() -> Hub {
    Hub::new(HubConfig::default())
}

fn payload(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// The next event, or None if nothing is ready right now.
fn ready(subscription: &mut Subscription) -> Option<Event> {
    future::block_on(future::poll_once(subscription.next())).flatten()
}

fn message_text(event: Event) -> (String, u64) {
    match event {
        Event::Message(m) => (String::from_utf8(m.payload().to_vec()).unwrap(), m.offset()),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn offsets_count_from_zero_per_topic() {
    let hub = hub();
    assert_eq!(hub.publish("a", payload("1")).unwrap().offset(), 0);
    assert_eq!(hub.publish("a", payload("2")).unwrap().offset(), 1);
    assert_eq!(hub.publish("b", payload("1")).unwrap().offset(), 0);
    let topics = hub.topics();
    assert_eq!(topics.len(), 2);
    assert_eq!((topics[0].name.as_str(), topics[0].next_offset), ("a", 2));
    assert_ne!(
        topics[0].epoch, topics[1].epoch,
        "each topic has its own epoch"
    );
}

#[test]
fn subscribers_start_now_earliest_or_at_an_offset() {
    let hub = hub();
    for i in 0..5 {
        hub.publish("t", payload(&i.to_string())).unwrap();
    }
    let mut now = hub.subscribe("t", StartFrom::Now, "now").unwrap();
    let mut earliest = hub.subscribe("t", StartFrom::Earliest, "earliest").unwrap();
    let mut from_three = hub.subscribe("t", StartFrom::Offset(3), "from-3").unwrap();
    assert_eq!(ready(&mut now), None);
    assert_eq!(message_text(ready(&mut earliest).unwrap()), ("0".into(), 0));
    assert_eq!(
        message_text(ready(&mut from_three).unwrap()),
        ("3".into(), 3)
    );
    hub.publish("t", payload("5")).unwrap();
    assert_eq!(message_text(ready(&mut now).unwrap()), ("5".into(), 5));
    assert_eq!(
        message_text(ready(&mut from_three).unwrap()),
        ("4".into(), 4)
    );
    assert_eq!(
        message_text(ready(&mut from_three).unwrap()),
        ("5".into(), 5)
    );
    assert_eq!(ready(&mut from_three), None);
}

#[test]
fn an_offset_older_than_the_retention_gets_a_gap_notice_first() {
    let config = HubConfig {
        default_retention: Retention {
            max_messages: 3,
            max_age: Duration::from_secs(3600),
        },
        max_lag_bytes: 5 * cost(1),
        ..HubConfig::default()
    };
    let hub = Hub::new(config);
    for i in 0..10 {
        hub.publish("t", payload(&i.to_string())).unwrap();
    }
    // Held for subscribers catching up (the newest five): a resume there loses nothing,
    // though a replay from the earliest starts at the retention's three.
    let mut resumed = hub.subscribe("t", StartFrom::Offset(5), "resumed").unwrap();
    assert_eq!(message_text(ready(&mut resumed).unwrap()).1, 5);
    let mut earliest = hub.subscribe("t", StartFrom::Earliest, "earliest").unwrap();
    assert_eq!(message_text(ready(&mut earliest).unwrap()).1, 7);
    let mut sub = hub.subscribe("t", StartFrom::Offset(2), "late").unwrap();
    match ready(&mut sub).unwrap() {
        Event::Gap { from, to, .. } => assert_eq!((from, to), (2, 4)),
        other => panic!("expected a gap, got {other:?}"),
    }
    assert_eq!(message_text(ready(&mut sub).unwrap()).1, 5);
}

/// A position from the topic's own epoch resumes exactly; one from another epoch (another
/// hub: a restart, or another node) is told with a reset and replays what this epoch holds.
#[test]
fn a_position_from_another_epoch_is_told_with_a_reset() {
    let before = hub();
    let seen = before.publish("t", payload("old")).unwrap().position();
    let after = hub();
    for text in ["a", "b"] {
        after.publish("t", payload(text)).unwrap();
    }
    let epoch = after.topics()[0].epoch;
    assert_ne!(epoch, seen.epoch);

    let mut same = after
        .subscribe("t", StartFrom::At(Position { epoch, offset: 1 }), "same")
        .unwrap();
    assert_eq!(message_text(ready(&mut same).unwrap()), ("b".into(), 1));

    let mut moved = after
        .subscribe("t", StartFrom::At(seen.next().unwrap()), "moved")
        .unwrap();
    assert_eq!(
        ready(&mut moved),
        Some(Event::Reset {
            topic: weir_pubsub::TopicName::new("t").unwrap(),
            previous_epoch: seen.epoch,
            epoch,
            from: 0
        })
    );
    assert_eq!(message_text(ready(&mut moved).unwrap()), ("a".into(), 0));
    assert_eq!(message_text(ready(&mut moved).unwrap()), ("b".into(), 1));
    assert!(
        after
            .subscribe("t.*", StartFrom::At(seen), "pattern")
            .is_err(),
        "positions belong to one topic"
    );
}

#[test]
fn positions_read_and_write_as_epoch_dash_offset() {
    let position = Position {
        epoch: 4461862130098176,
        offset: 17,
    };
    assert_eq!(position.to_string(), "4461862130098176-17");
    assert_eq!("4461862130098176-17".parse::<Position>(), Ok(position));
    assert_eq!(
        "4461862130098176-17".parse::<StartFrom>(),
        Ok(StartFrom::At(position))
    );
    assert_eq!("17".parse::<StartFrom>(), Ok(StartFrom::Offset(17)));
    for bad in [
        "",
        "-",
        "1-",
        "-1",
        "1-2-3",
        "+1-2",
        "1-+2",
        "x",
        "+5",
        "18446744073709551616-0",
    ] {
        assert!(bad.parse::<StartFrom>().is_err(), "{bad:?}");
    }
    let largest = Position {
        epoch: 1,
        offset: u64::MAX,
    };
    assert_eq!(largest.next(), None);
}

#[test]
fn wildcards_follow_existing_and_new_topics() {
    let hub = hub();
    hub.publish("orders.eu", payload("old")).unwrap();
    let mut one = hub.subscribe("orders.*", StartFrom::Now, "one").unwrap();
    let mut all = hub.subscribe("orders.>", StartFrom::Now, "all").unwrap();
    hub.publish("orders.eu", payload("eu")).unwrap();
    hub.publish("orders.us.created", payload("us-created"))
        .unwrap();
    hub.publish("orders.jp", payload("jp")).unwrap();
    hub.publish("payments.eu", payload("other")).unwrap();
    let mut got_one = Vec::new();
    while let Some(event) = ready(&mut one) {
        got_one.push(message_text(event).0);
    }
    got_one.sort();
    assert_eq!(got_one, vec!["eu", "jp"]);
    let mut got_all = Vec::new();
    while let Some(event) = ready(&mut all) {
        got_all.push(message_text(event).0);
    }
    got_all.sort();
    assert_eq!(got_all, vec!["eu", "jp", "us-created"]);
    assert_eq!(
        hub.subscribe("orders.*", StartFrom::Offset(1), "x")
            .unwrap_err(),
        SubscribeError::OffsetWithWildcard("orders.*".into())
    );
}

/// What a message of `payload` bytes counts for in the byte limits.
fn cost(payload: usize) -> usize {
    payload + 320
}

/// A hub whose subscribers may fall four one-byte messages behind (past a retention of
/// two: what the retention keeps is a replay, never lag).
fn slow_hub(policy: SlowSubscriberPolicy) -> Hub {
    Hub::new(HubConfig {
        default_retention: Retention {
            max_messages: 2,
            max_age: Duration::from_secs(3600),
        },
        max_lag_bytes: 4 * cost(1),
        slow_policy: policy,
        ..HubConfig::default()
    })
}

#[test]
fn a_slow_subscriber_skips_ahead_with_a_lagged_notice() {
    let hub = slow_hub(SlowSubscriberPolicy::DropOldest);
    let mut slow = hub.subscribe("t", StartFrom::Now, "10.0.0.7:5123").unwrap();
    let mut fast = hub.subscribe("t", StartFrom::Now, "fast").unwrap();
    for i in 0..10 {
        hub.publish("t", payload(&i.to_string())).unwrap();
        // The fast one keeps up; the publisher never waits for the slow one.
        assert_eq!(message_text(ready(&mut fast).unwrap()).1, i);
    }
    match ready(&mut slow).unwrap() {
        Event::Lagged { missed, .. } => assert_eq!(missed, 6),
        other => panic!("expected a lag notice, got {other:?}"),
    }
    let rest: Vec<u64> = std::iter::from_fn(|| ready(&mut slow))
        .map(|e| message_text(e).1)
        .collect();
    assert_eq!(rest, vec![6, 7, 8, 9]);
    let report = hub.slow_subscribers();
    assert_eq!(report.len(), 1);
    assert_eq!(
        (report[0].label.as_str(), report[0].missed),
        ("10.0.0.7:5123", 6),
        "the slow connection is named"
    );
}

/// The issue's burst, in the hub: far more messages than the retention keeps arrive before
/// a subscriber reads; within the lag allowed (bytes), it still gets every one, in order.
#[test]
fn a_burst_past_the_retention_reaches_a_subscriber_that_reads_it() {
    let hub = Hub::new(HubConfig {
        default_retention: Retention {
            max_messages: 10,
            max_age: Duration::from_secs(3600),
        },
        max_lag_bytes: 10_000 * cost(100),
        ..HubConfig::default()
    });
    let mut reader = hub.subscribe("burst", StartFrom::Now, "reader").unwrap();
    let body = "x".repeat(100);
    for _ in 0..10_000 {
        hub.publish("burst", payload(&body)).unwrap();
    }
    let offsets: Vec<u64> = std::iter::from_fn(|| ready(&mut reader))
        .map(|e| message_text(e).1)
        .collect();
    assert_eq!(offsets, (0..10_000).collect::<Vec<u64>>());
    // What the reader needed is let go once a later burst passes the lag allowed; a new
    // subscriber's replay is the retention, as before.
    for _ in 0..10_000 {
        hub.publish("burst", payload(&body)).unwrap();
    }
    assert!(hub.retained_bytes() <= 10_000 * cost(100));
    let mut replay = hub
        .subscribe("burst", StartFrom::Earliest, "replay")
        .unwrap();
    assert_eq!(message_text(ready(&mut replay).unwrap()).1, 19_990);
}

/// What the count retention keeps is a replay, not lag, however much it weighs; and the
/// newest message is always delivered, even one larger than the lag allowed.
#[test]
fn retained_messages_and_the_newest_are_never_lag() {
    let hub = Hub::new(HubConfig {
        default_retention: Retention {
            max_messages: 10,
            max_age: Duration::from_secs(3600),
        },
        max_lag_bytes: 3 * cost(1000),
        ..HubConfig::default()
    });
    let big = "x".repeat(1000);
    for _ in 0..10 {
        hub.publish("heavy", payload(&big)).unwrap();
    }
    let mut replay = hub
        .subscribe("heavy", StartFrom::Earliest, "replay")
        .unwrap();
    let offsets: Vec<u64> = std::iter::from_fn(|| ready(&mut replay))
        .map(|e| message_text(e).1)
        .collect();
    assert_eq!(offsets, (0..10).collect::<Vec<u64>>());

    let live_only = Hub::new(HubConfig {
        default_retention: Retention {
            max_messages: 0,
            max_age: Duration::from_secs(3600),
        },
        max_lag_bytes: 100,
        ..HubConfig::default()
    });
    let mut reader = live_only.subscribe("t", StartFrom::Now, "reader").unwrap();
    live_only.publish("t", payload(&big)).unwrap();
    assert_eq!(message_text(ready(&mut reader).unwrap()).1, 0);
    assert_eq!(
        ready(&mut reader),
        None,
        "and nothing after it: no endless lag notices"
    );
}

/// Past the hub's budget, messages held only for subscribers catching up go before any
/// topic's retained history, however old that is.
#[test]
fn the_budget_takes_catch_up_messages_before_retained_ones() {
    let hub = Hub::new(HubConfig {
        default_retention: Retention {
            max_messages: 3,
            max_age: Duration::from_secs(3600),
        },
        max_retained_bytes: 200 * cost(100),
        ..HubConfig::default()
    });
    let body = "x".repeat(100);
    for _ in 0..3 {
        hub.publish("quiet", payload(&body)).unwrap();
    }
    let mut reader = hub.subscribe("busy", StartFrom::Now, "reader").unwrap();
    for _ in 0..1000 {
        hub.publish("busy", payload(&body)).unwrap();
    }
    assert!(hub.retained_bytes() <= 200 * cost(100));
    let quiet = hub
        .topics()
        .into_iter()
        .find(|t| t.name.as_str() == "quiet")
        .unwrap();
    assert_eq!(
        (quiet.first_offset, quiet.next_offset),
        (0, 3),
        "the quiet topic keeps its history"
    );
    assert!(
        matches!(ready(&mut reader), Some(Event::Lagged { .. })),
        "the reader is told"
    );
}

#[test]
fn a_slow_subscriber_can_be_disconnected_instead() {
    let hub = slow_hub(SlowSubscriberPolicy::Disconnect);
    let mut slow = hub.subscribe("t", StartFrom::Now, "slow").unwrap();
    for i in 0..10 {
        hub.publish("t", payload(&i.to_string())).unwrap();
    }
    assert!(matches!(ready(&mut slow), Some(Event::Disconnected { .. })));
    assert_eq!(future::block_on(slow.next()), None);
}

#[tokio::test]
async fn a_waiting_subscriber_is_woken_by_a_publish() {
    let hub = hub();
    let mut sub = hub.subscribe("t", StartFrom::Now, "waiter").unwrap();
    let publisher = hub.clone();
    let task = tokio::spawn(async move { sub.next().await });
    tokio::task::yield_now().await;
    publisher.publish("t", payload("hello")).unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(message_text(event).0, "hello");
}

#[test]
fn bad_input_gets_a_named_error() {
    let hub = Hub::new(HubConfig {
        max_payload: 4,
        max_topics: 2,
        ..HubConfig::default()
    });
    assert!(matches!(
        hub.publish("a b", payload("x")),
        Err(PublishError::Name(_))
    ));
    assert_eq!(
        hub.publish("a", payload("12345")),
        Err(PublishError::PayloadTooLarge { size: 5, limit: 4 })
    );
    hub.publish("a", payload("1")).unwrap();
    hub.publish("b", payload("1")).unwrap();
    assert_eq!(
        hub.publish("c", payload("1")),
        Err(PublishError::TooManyTopics(2))
    );
    assert!(TopicPattern::new("orders.>").is_ok());
}

#[test]
fn subscribers_per_topic_are_limited_and_counted() {
    let hub = Hub::new(HubConfig {
        max_subscribers_per_topic: 2,
        ..HubConfig::default()
    });
    let first = hub.subscribe("room", StartFrom::Now, "a").unwrap();
    let _second = hub.subscribe("room", StartFrom::Now, "b").unwrap();
    assert_eq!(
        hub.subscribe("room", StartFrom::Now, "c").unwrap_err(),
        SubscribeError::TooManySubscribers {
            pattern: "room".into(),
            limit: 2
        }
    );
    // Patterns are counted on their own: a wildcard is not a subscriber of "room".
    let _wild = hub.subscribe("room.>", StartFrom::Now, "d").unwrap();
    assert_eq!(hub.topics()[0].subscribers, 2);
    // A dropped subscription gives its place back.
    drop(first);
    let _third = hub.subscribe("room", StartFrom::Now, "c").unwrap();
    assert_eq!(hub.topics()[0].subscribers, 2);
}

/// A hub whose topics are idle at once, so upkeep lets go of every topic it may.
fn forgetful_hub() -> Hub {
    Hub::new(HubConfig {
        topic_idle: Duration::ZERO,
        ..HubConfig::default()
    })
}

fn topic_names(hub: &Hub) -> Vec<String> {
    hub.topics()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

#[test]
fn upkeep_lets_go_of_topics_nobody_follows_and_keeps_the_others() {
    let hub = forgetful_hub();
    drop(hub.subscribe("gone", StartFrom::Now, "a").unwrap());
    let _by_name = hub.subscribe("kept.by-name", StartFrom::Now, "a").unwrap();
    let by_pattern = hub.subscribe("kept.>", StartFrom::Now, "b").unwrap();
    drop(
        hub.subscribe("kept.by-pattern", StartFrom::Now, "c")
            .unwrap(),
    );
    hub.publish("retains", payload("x")).unwrap();
    assert_eq!(
        topic_names(&hub),
        ["gone", "kept.by-name", "kept.by-pattern", "retains"]
    );
    assert_eq!(hub.upkeep().removed, 1);
    assert_eq!(
        topic_names(&hub),
        ["kept.by-name", "kept.by-pattern", "retains"],
        "followed by name, by a live pattern, or holding a message"
    );
    drop(by_pattern);
    hub.upkeep();
    assert_eq!(topic_names(&hub), ["kept.by-name", "retains"]);
    // A topic let go is made anew by the next publish, in a new epoch.
    let again = hub.publish("kept.by-pattern", payload("z")).unwrap();
    assert_eq!(again.offset(), 0);
}

#[test]
fn messages_past_their_age_leave_memory_at_upkeep() {
    let hub = Hub::new(HubConfig {
        default_retention: Retention {
            max_age: Duration::from_millis(20),
            ..Retention::default()
        },
        ..HubConfig::default()
    });
    for i in 0..10 {
        hub.publish("ticks", payload(&format!("t{i}"))).unwrap();
    }
    let held = hub.retained_bytes();
    assert!(held > 0);
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(hub.upkeep().expired, 10);
    assert_eq!(hub.retained_bytes(), 0, "{held} bytes given back");
    // A replay now starts after them, saying what it missed.
    let mut late = hub.subscribe("ticks", StartFrom::Offset(0), "r").unwrap();
    assert!(matches!(
        ready(&mut late),
        Some(Event::Gap { from: 0, to: 9, .. })
    ));
}

#[test]
fn a_live_subscriber_behind_a_byte_eviction_is_told() {
    let hub = Hub::new(HubConfig {
        max_topic_bytes: 4 * 1024,
        ..HubConfig::default()
    });
    let mut reader = hub.subscribe("big", StartFrom::Now, "r").unwrap();
    let kib = "x".repeat(1024);
    for _ in 0..10 {
        hub.publish("big", payload(&kib)).unwrap();
    }
    // Ten 1 KiB messages in a 4 KiB topic: the reader, still at offset 0, lost the oldest
    // and hears so before the rest.
    match ready(&mut reader) {
        Some(Event::Lagged { missed, .. }) => assert!(missed >= 6, "{missed}"),
        other => panic!("expected a lagged notice, got {other:?}"),
    }
    let (_, offset) = message_text(ready(&mut reader).unwrap());
    assert!(offset >= 6, "reading goes on from what is held: {offset}");
}
