//! The hub's side of the relay between nodes: what it forwards, what it keeps of what
//! arrives, and how it reports its subscribers' interest.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_lite::StreamExt;
use weir_pubsub::{Event, Hub, HubConfig, Relay, RelayStats, StartFrom, TopicName};

/// Records what the hub forwards.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<(String, Bytes, bool)>>);

impl Relay for Recorder {
    fn forward(&self, topic: &TopicName, payload: &Bytes, only_if_exists: bool) {
        let mut forwarded = self.0.lock().unwrap();
        forwarded.push((topic.to_string(), payload.clone(), only_if_exists));
    }

    fn stats(&self) -> RelayStats {
        RelayStats::default()
    }
}

fn forwarded(topic: &str, payload: &'static str, only_if_exists: bool) -> (String, Bytes, bool) {
    (topic.to_owned(), Bytes::from(payload), only_if_exists)
}

#[tokio::test]
async fn local_publishes_are_forwarded_and_relayed_ones_are_not() {
    let hub = Hub::new(HubConfig::default());
    let recorder = Arc::new(Recorder::default());
    assert!(hub.set_relay(recorder.clone()));
    assert!(
        !hub.set_relay(Arc::new(Recorder::default())),
        "one relay per hub"
    );

    hub.publish("a.b", Bytes::from("1")).unwrap();
    hub.publish_wait("a.c", Bytes::from("2")).await.unwrap();
    // No topic here, but another node may have one: forwarded all the same.
    assert_eq!(
        hub.publish_if_exists("jobs.9", Bytes::from("3")).unwrap(),
        None
    );
    // Refused publishes go nowhere.
    assert!(hub.publish("a..b", Bytes::from("x")).is_err());
    // What arrives from another node is published here only.
    let kept = hub
        .publish_relayed("a.b", Bytes::from("4"), false)
        .await
        .unwrap();
    assert_eq!(kept.map(|message| message.offset()), Some(1));

    assert_eq!(
        *recorder.0.lock().unwrap(),
        [
            forwarded("a.b", "1", false),
            forwarded("a.c", "2", false),
            forwarded("jobs.9", "3", true)
        ]
    );
}

#[tokio::test]
async fn relayed_messages_are_kept_only_where_someone_could_read_them() {
    let hub = Hub::new(HubConfig::default());
    // No topic and no subscriber here: dropped, and no topic made.
    let dropped = hub
        .publish_relayed("x.y", Bytes::from("0"), false)
        .await
        .unwrap();
    assert!(dropped.is_none() && hub.topics().is_empty());

    // A wildcard subscriber here: kept and delivered.
    let mut subscriber = hub.subscribe("x.>", StartFrom::Now, "test").unwrap();
    let kept = hub
        .publish_relayed("x.y", Bytes::from("hi"), false)
        .await
        .unwrap();
    assert!(kept.is_some());
    match subscriber.next().await.unwrap() {
        Event::Message(message) => assert_eq!(message.payload(), &Bytes::from("hi")),
        other => panic!("{other:?}"),
    }
    // The subscription gone, a message for a topic not here is dropped again; back, kept.
    drop(subscriber);
    assert!(hub
        .publish_relayed("x.q", Bytes::from("3"), false)
        .await
        .unwrap()
        .is_none());
    let subscriber = hub.subscribe("x.>", StartFrom::Now, "test").unwrap();
    assert!(hub
        .publish_relayed("x.q", Bytes::from("4"), false)
        .await
        .unwrap()
        .is_some());
    drop(subscriber);
    // Only where the topic exists: a wildcard subscriber does not make per-job topics.
    let only_if_exists = hub
        .publish_relayed("x.z", Bytes::from("1"), true)
        .await
        .unwrap();
    assert!(only_if_exists.is_none());
    assert!(hub
        .publish_relayed("x.y", Bytes::from("2"), true)
        .await
        .unwrap()
        .is_some());
}

#[test]
fn interest_changes_with_a_topics_first_and_last_subscriber() {
    let hub = Hub::new(HubConfig::default());
    let mut changes = hub.interest_changes();
    assert!(!changes.has_changed().unwrap() && hub.interest().is_empty());

    let first = hub.subscribe("a.>", StartFrom::Now, "1").unwrap();
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();
    let second = hub.subscribe("a.>", StartFrom::Now, "2").unwrap();
    let exact = hub.subscribe("b.c", StartFrom::Now, "3").unwrap();
    assert!(changes.has_changed().unwrap(), "b.c is new");
    changes.mark_unchanged();
    assert_eq!(hub.interest_names(), ["a.>", "b.c"]);
    let interest = hub.interest();
    for (topic, wanted) in [
        ("a.x", true),
        ("a.x.y", true),
        ("b.c", true),
        ("b.d", false),
    ] {
        assert_eq!(
            interest.wants(&TopicName::new(topic).unwrap()),
            wanted,
            "{topic}"
        );
    }

    drop(first);
    assert!(
        !changes.has_changed().unwrap(),
        "a.> still has a subscriber"
    );
    drop((second, exact));
    assert!(changes.has_changed().unwrap());
    assert!(hub.interest().is_empty() && hub.interest_names().is_empty());
}
