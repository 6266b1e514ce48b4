//! /metrics names the slow subscriber, and counts jobs and waiting lease requests.

#![allow(missing_docs)]

use std::pin::Pin;
use std::sync::Arc;

use weir::config::ServeConfig;
use weir_http::{HttpMetrics, Method, Request, ResponseBody};
use weir_pubsub::{Event, Hub, StartFrom};

#[tokio::test]
async fn metrics_name_the_slow_subscriber() {
    let mut config = ServeConfig::defaults();
    // Two one-byte messages (each counts 320 bytes more), past a retention of two.
    config.pubsub.max_lag_bytes = 2 * 321;
    config.pubsub.default_retention.max_messages = 2;
    config.jobs.retention.cancelled = Some(std::time::Duration::ZERO);
    let hub = Hub::new(config.pubsub.clone());
    let data = std::env::temp_dir().join(format!("weir-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    config.data_dir = data.clone();
    let jobs = weir::serve::open_jobs(&config, &hub).await.unwrap();
    let router = weir::api::router(
        &config,
        Arc::new(HttpMetrics::new()),
        hub.clone(),
        Arc::new(weir_chat::ChatContext::new(
            hub.clone(),
            weir_chat::ChatConfig::default(),
            tokio_util::sync::CancellationToken::new(),
        )),
        jobs.clone(),
        tokio_util::sync::CancellationToken::new(),
    );

    let mut slow = hub
        .subscribe("ticks", StartFrom::Now, "sse 10.1.2.3:4444")
        .unwrap();
    for i in 0..10u8 {
        hub.publish("ticks", vec![i].into()).unwrap();
    }
    let event =
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut slow), cx)).await;
    assert!(
        matches!(event, Some(Event::Lagged { missed: 8, .. })),
        "{event:?}"
    );

    let text = scrape(&router).await;
    assert!(text.contains("weir_pubsub_topics 1\n"), "{text}");
    assert!(text.contains("weir_pubsub_messages_total 10\n"), "{text}");
    assert!(
        text.contains("weir_pubsub_subscriber_missed{subscriber=\"sse 10.1.2.3:4444\"} 8\n"),
        "{text}"
    );
    // A job waiting in one queue, and a lease request waiting on another.
    let payload = serde_json::value::RawValue::from_string("{}".into()).unwrap();
    jobs.enqueue(vec![weir_jobs::NewJob::new("mail", "send", payload)])
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let lease = tokio::spawn({
        let (jobs, stop) = (jobs.clone(), stop.clone());
        async move {
            let claim = weir_jobs::Claim {
                worker: "w".into(),
                queues: vec!["crawl".into()],
                kinds: vec!["send".into()],
                max: 1,
                lease_ttl: std::time::Duration::from_secs(10),
            };
            jobs.lease(claim, std::time::Duration::from_secs(60), &stop)
                .await
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while jobs.waiting_leases("crawl") == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the lease request never waited");

    let text = scrape(&router).await;
    assert!(text.contains("weir_jobs_scrape_ok 1\n"), "{text}");
    assert!(
        text.contains("weir_jobs{queue=\"mail\",state=\"available\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("weir_jobs_leases_waiting{queue=\"crawl\"} 1\n"),
        "{text}"
    );
    stop.cancel();
    assert!(lease.await.unwrap().unwrap().is_empty());

    // The mail job cancelled and, its retention (0s here) over, deleted: counted.
    assert!(
        text.contains("weir_jobs_pruned_total{state=\"cancelled\"} 0\n"),
        "{text}"
    );
    let query = weir_jobs::ListQuery {
        limit: 1,
        ..Default::default()
    };
    let mail = jobs.list(query).await.unwrap().remove(0);
    jobs.act(mail.id, weir_jobs::Action::Cancel).await.unwrap();
    let pruned = jobs
        .prune(weir_jobs::Timestamp::now().after(std::time::Duration::from_millis(1)))
        .await
        .unwrap();
    assert_eq!(pruned.cancelled, 1);
    let text = scrape(&router).await;
    assert!(
        text.contains("weir_jobs_pruned_total{state=\"cancelled\"} 1\n"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// The text of `GET /metrics`.
async fn scrape(router: &weir_http::Router) -> String {
    let response = router
        .dispatch(Request::build(Method::GET, "/metrics", &[], "").unwrap())
        .await;
    let ResponseBody::Full(body) = response.into_body() else {
        panic!("a full body")
    };
    String::from_utf8(body.to_vec()).unwrap()
}
