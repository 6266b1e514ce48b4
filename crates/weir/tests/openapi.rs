//! docs/openapi.yaml stays true to the code: every route `weir serve` registers is
//! described there, and every operation described there is served.

#![allow(missing_docs)]

use std::collections::BTreeSet;
use std::sync::Arc;

use weir::config::ServeConfig;
use weir_http::HttpMetrics;
use weir_pubsub::Hub;

/// (method, path) pairs of the `paths:` section: a path is a two-space-indented key
/// starting with '/', an operation a four-space-indented HTTP method under it.
fn documented() -> BTreeSet<(String, String)> {
    let spec = include_str!("../../../docs/openapi.yaml");
    let mut out = BTreeSet::new();
    let mut path = None;
    let mut in_paths = false;
    for line in spec.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(key) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if key.starts_with('/') {
                path = Some(key.to_string());
                continue;
            }
        }
        if let (Some(path), Some(method)) = (
            &path,
            line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')),
        ) {
            if ["get", "post", "put", "delete", "patch"].contains(&method) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let mut config = ServeConfig::defaults();
    let data = std::env::temp_dir().join(format!("weir-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    config.data_dir = data.clone();
    let hub = Hub::new(config.pubsub.clone());
    let chat = Arc::new(weir_chat::ChatContext::new(
        hub.clone(),
        weir_chat::ChatConfig::default(),
        tokio_util::sync::CancellationToken::new(),
    ));
    let jobs = weir::serve::open_jobs(&config, &hub).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let router = weir::api::router(&config, Arc::new(HttpMetrics::new()), hub, chat, jobs, stop);
    let _ = std::fs::remove_dir_all(&data);
    let served: BTreeSet<(String, String)> = router
        .routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path))
        .collect();
    let documented = documented();
    assert!(!documented.is_empty(), "the parser found the paths section");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/openapi.yaml: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "docs/openapi.yaml describes routes the server lacks: {unserved:?}"
    );
}
