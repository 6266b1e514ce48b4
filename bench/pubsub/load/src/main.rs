//! pubsub-load: measures a pub/sub server the same way whichever protocol it speaks.
//!
//! ```text
//! pubsub-load flood  PROTOCOL ADDR SUBSCRIBERS MESSAGES SIZE WINDOW
//! pubsub-load steady PROTOCOL ADDR SUBSCRIBERS RATE SECONDS SIZE
//! pubsub-load idle   PROTOCOL ADDR CONNECTIONS SERVER_PID
//! ```
//! PROTOCOL is weir, weir-sse, weir-ws, redis or nats. Each run prints one line of
//! `key=value` pairs for bench/pubsub/run.sh.
//!
//! * flood: one publisher sends MESSAGES with at most WINDOW in flight (published but not
//!   yet delivered to every subscriber); WINDOW = MESSAGES sends them all at once, as a
//!   burst arrives (bench/pubsub/run.sh does). Reports deliveries per second, what was
//!   delivered of what was expected, and publish→receive latency.
//! * steady: RATE messages a second for SECONDS; reports latency.
//! * idle: CONNECTIONS subscribers that receive nothing; reports the server's resident
//!   memory per connection (from /proc/SERVER_PID/status).
//!
//! Across nodes (bench/pubsub/cluster.sh): with `PUBLISH_ADDR` set, the publisher connects
//! there (another node of the cluster) while the subscribers use ADDR, and the publisher
//! starts once a probe message it publishes has reached every subscriber: a cluster learns
//! of a new subscription in the background, Weir's and NATS's alike.

mod histogram;
mod protocol;

use std::rc::Rc;
use std::cell::Cell;
use std::time::{Duration, Instant};

use histogram::Histogram;
use protocol::{payload, publish_frame, publisher, subscribe, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `@` and 16 hex digits: the start of every payload.
const MARKER: usize = 17;

/// No run waits longer than this for its last deliveries.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);
/// A flood whose slowest subscriber makes no progress for this long has lost messages.
const STALL_DEADLINE: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: pubsub-load flood|steady|idle PROTOCOL ADDR ... (see the source's header)";
    let (Some(mode), Some(protocol), Some(addr)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(64);
    };
    let Some(protocol) = Protocol::parse(protocol) else {
        eprintln!("unknown protocol {protocol}; use weir, weir-sse, weir-ws, redis or nats");
        std::process::exit(64);
    };
    let number = |i: usize| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
            eprintln!("{usage}");
            std::process::exit(64)
        })
    };
    // One thread: the tool is pinned to its own core, and the server to another.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&runtime, async {
        match mode.as_str() {
            "flood" => {
                flood(protocol, addr, number(3), number(4), number(5) as usize, number(6)).await
            }
            "steady" => steady(protocol, addr, number(3), number(4), number(5), number(6) as usize).await,
            "idle" => idle(protocol, addr, number(3), number(4) as u32).await,
            _ => {
                eprintln!("{usage}");
                std::process::exit(64)
            }
        }
    });
    if let Err(error) = result {
        eprintln!("pubsub-load: {error}");
        std::process::exit(1);
    }
}

/// What the subscribers share (one thread: plain cells).
struct Shared {
    origin: Instant,
    delivered: Cell<u64>,
    last_delivery: Cell<Duration>,
    /// Deliveries per subscriber, for the flood window (the slowest one sets the pace).
    each: Vec<Cell<u64>>,
    /// Whether each subscriber has had a probe (see [`probe_until_delivered`]).
    probed: Vec<Cell<bool>>,
}

impl Shared {
    fn new(subscribers: u64) -> Rc<Shared> {
        Rc::new(Shared {
            origin: Instant::now(),
            delivered: Cell::new(0),
            last_delivery: Cell::new(Duration::ZERO),
            each: (0..subscribers).map(|_| Cell::new(0)).collect(),
            probed: (0..subscribers).map(|_| Cell::new(false)).collect(),
        })
    }

    fn slowest(&self) -> u64 {
        self.each.iter().map(Cell::get).min().unwrap_or(0)
    }
}

/// Reads deliveries until `expected` arrived or the deadline; records latencies.
///
/// Parses in place, without copying what it reads: it looks for the `@` that starts each
/// payload, reads the send time after it, and skips the rest of the payload, carrying a
/// marker cut by a read boundary over to the next read. The tool has to cost less per
/// message than the servers it measures.
async fn receive(
    index: usize,
    mut stream: TcpStream,
    pending: Vec<u8>,
    expected: u64,
    size: usize,
    shared: Rc<Shared>,
    deadline: Rc<Cell<Option<Instant>>>,
) -> Histogram {
    let mut histogram = Histogram::new();
    let mut count = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry: Vec<u8> = Vec::with_capacity(MARKER);
    let mut skip = 0usize;
    let mut first = Some(pending);
    while count < expected {
        let n = if let Some(pending) = first.take() {
            buf[..pending.len()].copy_from_slice(&pending);
            pending.len()
        } else {
            let read = match deadline.get() {
                Some(at) => match tokio::time::timeout_at(at.into(), stream.read(&mut buf)).await {
                    Ok(read) => read,
                    Err(_) => break,
                },
                None => stream.read(&mut buf).await,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            }
        };
        let data = &buf[..n];
        let now = shared.origin.elapsed();
        let mut batch = 0;
        let mut record = |marker: &[u8], histogram: &mut Histogram| {
            let hex = std::str::from_utf8(&marker[1..MARKER]).unwrap_or("");
            if hex.bytes().all(|b| b == b'0') {
                // A probe (sent at time 0): not one of the measured messages.
                shared.probed[index].set(true);
            } else if let Ok(sent) = u64::from_str_radix(hex, 16) {
                let latency = now.saturating_sub(Duration::from_nanos(sent));
                histogram.record(latency.as_micros() as u64);
                batch += 1;
            }
        };
        let mut i = skip.min(n);
        skip -= i;
        if !carry.is_empty() && i < n {
            let take = (MARKER - carry.len()).min(n - i);
            carry.extend_from_slice(&data[i..i + take]);
            i += take;
            if carry.len() == MARKER {
                record(&carry, &mut histogram);
                carry.clear();
                let rest = size - MARKER;
                let step = rest.min(n - i);
                i += step;
                skip = rest - step;
            }
        }
        while let Some(offset) = data[i..].iter().position(|&b| b == b'@') {
            let start = i + offset;
            if n - start < MARKER {
                carry.extend_from_slice(&data[start..]);
                i = n;
                break;
            }
            record(&data[start..start + MARKER], &mut histogram);
            let end = start + size;
            if end <= n {
                i = end;
            } else {
                skip = end - n;
                i = n;
                break;
            }
        }
        count += batch;
        shared.delivered.set(shared.delivered.get() + batch);
        shared.each[index].set(count);
        shared.last_delivery.set(now);
    }
    histogram
}

/// Connects `n` subscribers, 256 handshakes at a time.
async fn connect_all(protocol: Protocol, addr: &str, n: u64) -> std::io::Result<Vec<(TcpStream, Vec<u8>)>> {
    let mut all = Vec::with_capacity(n as usize);
    let mut remaining = n;
    while remaining > 0 {
        let step = remaining.min(256);
        let mut handshakes = tokio::task::JoinSet::new();
        for _ in 0..step {
            let addr = addr.to_string();
            handshakes.spawn_local(async move { subscribe(protocol, &addr).await });
        }
        while let Some(done) = handshakes.join_next().await {
            all.push(done.expect("handshake task")?);
        }
        remaining -= step;
    }
    Ok(all)
}

/// Discards what the server answers the publisher (Redis and Weir acknowledge each publish).
fn drain_replies(mut reader: tokio::net::tcp::OwnedReadHalf) {
    tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {}
    });
}

async fn flood(protocol: Protocol, addr: &str, subscribers: u64, messages: u64, size: usize, window: u64) -> std::io::Result<()> {
    let connections = connect_all(protocol, addr, subscribers).await?;
    let shared = Shared::new(subscribers);
    let deadline = Rc::new(Cell::new(None));
    let mut tasks = Vec::new();
    for (index, (stream, pending)) in connections.into_iter().enumerate() {
        tasks.push(tokio::task::spawn_local(receive(index, stream, pending, messages, size, shared.clone(), deadline.clone())));
    }
    let (reader, mut writer) = publisher(protocol, &publish_addr(addr)).await?.into_split();
    drain_replies(reader);
    probe_until_delivered(protocol, &mut writer, &shared, size).await?;
    let started = shared.origin.elapsed();
    let mut sent = 0u64;
    let mut frame = Vec::with_capacity(64 * 1024);
    let mut body = Vec::with_capacity(size);
    while sent < messages {
        // Stay within the window: wait until the slowest subscriber is at most WINDOW
        // messages behind.
        // Across nodes a message may be lost (the relay is at most once): a window that
        // never opens again ends the run instead of spinning.
        let mut stuck_since: Option<Instant> = None;
        while sent.saturating_sub(window) > shared.slowest() {
            let since = *stuck_since.get_or_insert_with(Instant::now);
            if since.elapsed() > STALL_DEADLINE {
                return Err(std::io::Error::other(format!(
                    "no subscriber progress for {STALL_DEADLINE:?} at {sent} sent: messages lost?"
                )));
            }
            tokio::task::yield_now().await;
        }
        frame.clear();
        let batch = (messages - sent).min(64).min(window);
        for _ in 0..batch {
            payload(shared.origin.elapsed().as_nanos() as u64, size, &mut body);
            publish_frame(protocol, &body, &mut frame);
        }
        writer.write_all(&frame).await?;
        sent += batch;
    }
    deadline.set(Some(Instant::now() + DRAIN_DEADLINE));
    let mut histogram = Histogram::new();
    for task in tasks {
        histogram.merge(&task.await.expect("subscriber task"));
    }
    let elapsed = shared.last_delivery.get().saturating_sub(started).as_secs_f64();
    let delivered = shared.delivered.get();
    println!(
        "mode=flood protocol={protocol:?} subscribers={subscribers} messages={messages} delivered={delivered} expected={} seconds={elapsed:.3} deliveries_per_sec={:.0} p50_us={} p99_us={}",
        messages * subscribers,
        delivered as f64 / elapsed,
        histogram.quantile(0.50),
        histogram.quantile(0.99),
    );
    Ok(())
}

async fn steady(protocol: Protocol, addr: &str, subscribers: u64, rate: u64, seconds: u64, size: usize) -> std::io::Result<()> {
    let connections = connect_all(protocol, addr, subscribers).await?;
    let shared = Shared::new(subscribers);
    let deadline = Rc::new(Cell::new(None));
    let messages = rate * seconds;
    let mut tasks = Vec::new();
    for (index, (stream, pending)) in connections.into_iter().enumerate() {
        tasks.push(tokio::task::spawn_local(receive(index, stream, pending, messages, size, shared.clone(), deadline.clone())));
    }
    let (reader, mut writer) = publisher(protocol, &publish_addr(addr)).await?.into_split();
    drain_replies(reader);
    probe_until_delivered(protocol, &mut writer, &shared, size).await?;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    let mut frame = Vec::new();
    let mut body = Vec::with_capacity(size);
    while sent < messages {
        ticks.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(messages);
        frame.clear();
        while sent < due {
            payload(shared.origin.elapsed().as_nanos() as u64, size, &mut body);
            publish_frame(protocol, &body, &mut frame);
            sent += 1;
        }
        if !frame.is_empty() {
            writer.write_all(&frame).await?;
        }
    }
    deadline.set(Some(Instant::now() + DRAIN_DEADLINE));
    let mut histogram = Histogram::new();
    for task in tasks {
        histogram.merge(&task.await.expect("subscriber task"));
    }
    println!(
        "mode=steady protocol={protocol:?} subscribers={subscribers} rate={rate} delivered={} expected={} p50_us={} p99_us={} p999_us={}",
        shared.delivered.get(),
        messages * subscribers,
        histogram.quantile(0.50),
        histogram.quantile(0.99),
        histogram.quantile(0.999),
    );
    Ok(())
}

/// Where the publisher connects: `PUBLISH_ADDR` (another node), else the subscribers' ADDR.
fn publish_addr(addr: &str) -> String {
    std::env::var("PUBLISH_ADDR").unwrap_or_else(|_| addr.to_owned())
}

/// With `PUBLISH_ADDR` set, publishes a probe message (stamped with time 0, so that the
/// subscribers skip it) every 100 ms until every subscriber has had one: the node the
/// publisher is on has then learnt of the subscriptions.
async fn probe_until_delivered(
    protocol: Protocol,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
    size: usize,
) -> std::io::Result<()> {
    if std::env::var_os("PUBLISH_ADDR").is_none() {
        return Ok(());
    }
    let started = Instant::now();
    let (mut frame, mut body) = (Vec::new(), Vec::with_capacity(size));
    while !shared.probed.iter().all(Cell::get) {
        if started.elapsed() > DRAIN_DEADLINE {
            return Err(std::io::Error::other("no probe reached every subscriber"));
        }
        frame.clear();
        payload(0, size, &mut body);
        publish_frame(protocol, &body, &mut frame);
        writer.write_all(&frame).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn resident_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no VmRSS"))
}

async fn idle(protocol: Protocol, addr: &str, connections: u64, pid: u32) -> std::io::Result<()> {
    // A few connections first, so that one-time allocations (thread stacks, the first
    // topic) are not charged to the per-connection figure.
    let warm = connect_all(protocol, addr, 10).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = resident_kib(pid)?;
    let held = connect_all(protocol, addr, connections).await?;
    // Let the server settle (tasks parked, buffers shrunk) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = resident_kib(pid)?;
    println!(
        "mode=idle protocol={protocol:?} connections={connections} rss_before_kib={before} rss_after_kib={after} kib_per_connection={:.2}",
        (after.saturating_sub(before)) as f64 / connections as f64
    );
    drop(held);
    drop(warm);
    Ok(())
}
