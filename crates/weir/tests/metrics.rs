//! /metrics names the slow subscriber.

#![allow(missing_docs)]

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;

use weir::config::ServeConfig;
use weir_http::{HttpMetrics, Method, Request, ResponseBody};
use weir_pubsub::{Event, Hub, StartFrom};

#[tokio::test]
async fn metrics_name_the_slow_subscriber() {
    let mut config = ServeConfig::defaults();
    config.pubsub.lag_limit = NonZeroUsize::new(2).unwrap();
    let hub = Hub::new(config.pubsub.clone());
    let data = std::env::temp_dir().join(format!("weir-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    config.data_dir = data.clone();
    let jobs = weir::serve::open_jobs(&config, &hub).await.unwrap();
    let router = weir::serve::router(
        &config,
        Arc::new(HttpMetrics::new()),
        hub.clone(),
        Arc::new(weir::line::LineContext::new(
            hub.clone(),
            weir::line::LineConfig::default(),
            tokio_util::sync::CancellationToken::new(),
        )),
        jobs,
        tokio_util::sync::CancellationToken::new(),
    );
    let _ = std::fs::remove_dir_all(&data);

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

    let response = router
        .dispatch(Request::build(Method::GET, "/metrics", &[], "").unwrap())
        .await;
    let ResponseBody::Full(body) = response.into_body() else {
        panic!("a full body")
    };
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("weir_pubsub_topics 1\n"), "{text}");
    assert!(text.contains("weir_pubsub_messages_total 10\n"), "{text}");
    assert!(
        text.contains("weir_pubsub_subscriber_missed{subscriber=\"sse 10.1.2.3:4444\"} 8\n"),
        "{text}"
    );
}
