//! weir-stream against futures-util and tokio-stream, the same work written with each.
//!
//! `cargo bench -p weir-stream` prints times and, through divan's allocation profiler,
//! allocations per run. Results and ratios: docs/benchmarks.md.

#![allow(missing_docs)]

use std::num::NonZeroUsize;
use std::time::Duration;

use divan::{AllocProfiler, Bencher};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const READY_FUTURES: u64 = 512_000;
const TIMERS: u64 = 65_536;
const CONCURRENCY: usize = 256;
const CHAIN: u64 = 1_000_000;

/// 512,000 futures that are ready at once, 256 at a time (futures-buffered's benchmark).
mod ready_futures {
    use super::*;
    use futures_util::StreamExt as _;

    #[divan::bench]
    fn weir_map_concurrent(bencher: Bencher<'_, '_>) {
        use weir_stream::WeirStreamExt;
        let limit = NonZeroUsize::new(CONCURRENCY).unwrap();
        bencher.bench(|| {
            futures_lite::future::block_on(
                futures_lite::stream::iter(0..READY_FUTURES)
                    .map_concurrent(limit, |x| async move { x })
                    .fold(0u64, |a, x| async move { a + x }),
            )
        });
    }

    #[divan::bench]
    fn futures_util_buffer_unordered(bencher: Bencher<'_, '_>) {
        bencher.bench(|| {
            futures_lite::future::block_on(
                futures_util::stream::iter(0..READY_FUTURES)
                    .map(|x| async move { x })
                    .buffer_unordered(CONCURRENCY)
                    .fold(0u64, |a, x| async move { a + x }),
            )
        });
    }

    #[divan::bench]
    fn weir_map_concurrent_ordered(bencher: Bencher<'_, '_>) {
        use weir_stream::WeirStreamExt;
        let limit = NonZeroUsize::new(CONCURRENCY).unwrap();
        bencher.bench(|| {
            futures_lite::future::block_on(
                futures_lite::stream::iter(0..READY_FUTURES)
                    .map_concurrent_ordered(limit, |x| async move { x })
                    .fold(0u64, |a, x| async move { a + x }),
            )
        });
    }

    #[divan::bench]
    fn futures_util_buffered(bencher: Bencher<'_, '_>) {
        bencher.bench(|| {
            futures_lite::future::block_on(
                futures_util::stream::iter(0..READY_FUTURES)
                    .map(|x| async move { x })
                    .buffered(CONCURRENCY)
                    .fold(0u64, |a, x| async move { a + x }),
            )
        });
    }
}

/// 65,536 short timers, 256 at a time, on tokio.
mod timers {
    use super::*;
    use futures_util::StreamExt as _;

    fn work(i: u64) -> Duration {
        // 0-3 ms, so completions interleave.
        Duration::from_micros(i % 4 * 1000)
    }

    #[divan::bench(sample_count = 5)]
    fn weir_map_concurrent(bencher: Bencher<'_, '_>) {
        use weir_stream::WeirStreamExt;
        let rt = runtime();
        let limit = NonZeroUsize::new(CONCURRENCY).unwrap();
        bencher.bench(|| {
            rt.block_on(
                futures_lite::stream::iter(0..TIMERS)
                    .map_concurrent(limit, |i| tokio::time::sleep(work(i)))
                    .fold(0u64, |a, ()| async move { a + 1 }),
            )
        });
    }

    #[divan::bench(sample_count = 5)]
    fn futures_util_buffer_unordered(bencher: Bencher<'_, '_>) {
        let rt = runtime();
        bencher.bench(|| {
            rt.block_on(
                futures_util::stream::iter(0..TIMERS)
                    .map(|i| tokio::time::sleep(work(i)))
                    .buffer_unordered(CONCURRENCY)
                    .fold(0u64, |a, ()| async move { a + 1 }),
            )
        });
    }
}

/// 1,000,000 items through map, filter and batches of 1,000.
mod map_filter_batch {
    use super::*;

    #[divan::bench]
    fn weir_batch(bencher: Bencher<'_, '_>) {
        use futures_lite::StreamExt as _;
        use weir_stream::{TokioTimer, WeirStreamExt};
        let rt = runtime();
        let size = NonZeroUsize::new(1000).unwrap();
        bencher.bench(|| {
            rt.block_on(
                futures_lite::stream::iter(0..CHAIN)
                    .map(|x| x * 3)
                    .filter(|x| x % 2 == 0)
                    .batch(size, Duration::from_secs(1), TokioTimer)
                    .fold(0usize, |a, b| a + b.len()),
            )
        });
    }

    #[divan::bench]
    fn futures_util_ready_chunks(bencher: Bencher<'_, '_>) {
        use futures_util::StreamExt as _;
        let rt = runtime();
        bencher.bench(|| {
            rt.block_on(
                futures_util::stream::iter(0..CHAIN)
                    .map(|x| x * 3)
                    .filter(|x| std::future::ready(x % 2 == 0))
                    .ready_chunks(1000)
                    .fold(0usize, |a, b| async move { a + b.len() }),
            )
        });
    }

    #[divan::bench]
    fn tokio_stream_chunks_timeout(bencher: Bencher<'_, '_>) {
        use tokio_stream::StreamExt as _;
        let rt = runtime();
        bencher.bench(|| {
            rt.block_on(async {
                let chunks = tokio_stream::iter(0..CHAIN)
                    .map(|x| x * 3)
                    .filter(|x| x % 2 == 0)
                    .chunks_timeout(1000, Duration::from_secs(1));
                tokio::pin!(chunks);
                let mut total = 0;
                while let Some(batch) = chunks.next().await {
                    total += batch.len();
                }
                total
            })
        });
    }
}
