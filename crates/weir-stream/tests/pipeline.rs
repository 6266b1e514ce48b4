//! The pipeline example under a slow sink: bounded in flight, source slowed, nothing lost.

#![allow(missing_docs)]

#[path = "../examples/pipeline.rs"]
#[allow(dead_code, unreachable_pub)]
mod pipeline;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pipeline::{run, Gauges, PipelineConfig};

#[tokio::test(start_paused = true)]
async fn a_slow_sink_slows_the_source_instead_of_filling_memory() {
    let config = PipelineConfig::default();
    let gauges = Arc::new(Gauges::default());
    let records = 5_000;
    let written = run(records, &config, gauges.clone()).await;

    let rejected = gauges.rejected.load(Ordering::SeqCst);
    assert_eq!(rejected, records / 97, "every malformed line is counted");
    assert_eq!(
        written + rejected,
        records,
        "every record written or rejected"
    );

    // Read-ahead, in-flight enrichment, one batch being filled, one being written, and the
    // item in hand at each of the two boundaries.
    let bound =
        config.read_ahead.get() + config.enrich_limit.get() + 2 * config.batch_size.get() + 2;
    let peak = gauges.peak_in_flight.load(Ordering::SeqCst);
    assert!(
        peak <= bound,
        "at most {bound} records between source and sink, saw {peak}"
    );
    assert!(
        peak < records / 10,
        "the source did not run ahead: {peak} of {records}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_sink_sets_the_pace() {
    let config = PipelineConfig::default();
    let gauges = Arc::new(Gauges::default());
    let started = tokio::time::Instant::now();
    let records = 1_000;
    run(records, &config, gauges).await;
    // 1,000 records in batches of 50 at 40 ms a write: at least 20 writes.
    let writes = records.div_ceil(config.batch_size.get()) as u32;
    assert!(started.elapsed() >= config.write_latency * (writes - 1));
}
