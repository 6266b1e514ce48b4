//! Exercise 4: an async data pipeline with backpressure.
//!
//! records → parse → enrich (concurrent, limited) → batch → a deliberately slow sink.
//!
//! Every stage is bounded, so when the sink is slow the source is slowed down rather than
//! buffered: at most `read_ahead + enrich_limit + 2 × batch_size + 2` records (one batch
//! filling, one being written, one record in hand at two boundaries) are ever between the
//! source and the sink (tests/pipeline.rs checks it).
//!
//! `cargo run -p weir-stream --example pipeline -- 2000`

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{stream, StreamExt};
use weir_stream::{OverflowPolicy, TokioTimer, WeirStreamExt};

/// The knobs of the pipeline: every one a bound.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Records read ahead of the parser.
    pub read_ahead: NonZeroUsize,
    /// Enrichment calls in flight.
    pub enrich_limit: NonZeroUsize,
    /// Latency of one enrichment call (a lookup in another service, say).
    pub enrich_latency: Duration,
    /// Records per write.
    pub batch_size: NonZeroUsize,
    /// Longest a partial batch waits.
    pub batch_wait: Duration,
    /// Time one write takes: the slow sink.
    pub write_latency: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            read_ahead: NonZeroUsize::new(64).expect("non-zero"),
            enrich_limit: NonZeroUsize::new(16).expect("non-zero"),
            enrich_latency: Duration::from_millis(5),
            batch_size: NonZeroUsize::new(50).expect("non-zero"),
            batch_wait: Duration::from_millis(20),
            write_latency: Duration::from_millis(40),
        }
    }
}

/// Counters the pipeline keeps as it runs.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Records the source has produced.
    pub produced: AtomicUsize,
    /// Records the sink has written.
    pub written: AtomicUsize,
    /// The most records ever between source and sink.
    pub peak_in_flight: AtomicUsize,
    /// Records that failed to parse (skipped, counted).
    pub rejected: AtomicUsize,
}

/// One input line, `id,cents`, once parsed (a line that does not parse is rejected).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The line's first field; enrichment derives the region from it.
    pub id: u64,
    /// Amount in cents.
    pub cents: i64,
    /// Filled in by enrichment.
    pub region: Option<&'static str>,
}

fn parse(line: &str) -> Option<Record> {
    let (id, cents) = line.split_once(',')?;
    Some(Record {
        id: id.trim().parse().ok()?,
        cents: cents.trim().parse().ok()?,
        region: None,
    })
}

/// Runs the pipeline over `records` generated lines; returns the number written.
pub async fn run(records: usize, config: &PipelineConfig, gauges: Arc<Gauges>) -> usize {
    let source_gauges = gauges.clone();
    let source = stream::iter(0..records).map(move |i| {
        let produced = source_gauges.produced.fetch_add(1, Ordering::SeqCst) + 1;
        let in_flight = produced - source_gauges.written.load(Ordering::SeqCst);
        source_gauges
            .peak_in_flight
            .fetch_max(in_flight, Ordering::SeqCst);
        // Every 97th line is malformed, as real input is.
        if i % 97 == 96 {
            format!("{i},not-a-number")
        } else {
            format!("{i},{}", i * 3)
        }
    });
    let parse_gauges = gauges.clone();
    let enrich_latency = config.enrich_latency;
    let mut batches = std::pin::pin!(source
        .buffer(config.read_ahead, OverflowPolicy::Backpressure)
        .filter_map(move |line| {
            let line = line.expect("backpressure never overflows");
            let parsed = parse(&line);
            if parsed.is_none() {
                // A rejected record leaves the pipeline here: count it as done.
                parse_gauges.rejected.fetch_add(1, Ordering::SeqCst);
                parse_gauges.written.fetch_add(1, Ordering::SeqCst);
            }
            parsed
        })
        .map_concurrent_ordered(config.enrich_limit, move |mut record| async move {
            tokio::time::sleep(enrich_latency).await;
            record.region = Some(if record.id % 2 == 0 { "eu" } else { "us" });
            record
        })
        .batch(config.batch_size, config.batch_wait, TokioTimer));
    let mut written = 0;
    while let Some(batch) = batches.next().await {
        // The slow sink.
        tokio::time::sleep(config.write_latency).await;
        written += batch.len();
        gauges.written.fetch_add(batch.len(), Ordering::SeqCst);
    }
    written
}

#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let records = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let config = PipelineConfig::default();
    let gauges = Arc::new(Gauges::default());
    let started = std::time::Instant::now();
    let written = run(records, &config, gauges.clone()).await;
    println!(
        "{written} records written, {} rejected, in {:?}; at most {} records in flight (bound {})",
        gauges.rejected.load(Ordering::SeqCst),
        started.elapsed(),
        gauges.peak_in_flight.load(Ordering::SeqCst),
        config.read_ahead.get() + config.enrich_limit.get() + 2 * config.batch_size.get() + 2,
    );
}
