// Resume with a real EventSource client (the `eventsource` npm package, 5.x, which Node
// applications use): the client reconnects on its own with Last-Event-ID, and a resume
// across a restart of the server, or onto another node of a cluster, is told with a
// `reset` event and never skips messages in silence; on a durable topic, another node
// resumes it exactly.
//
// Usage: node resume.mjs WEIR_BINARY [POSTGRES_URL]
// Without POSTGRES_URL only the restart is tried.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventSource } from "eventsource";

const [weir, database] = process.argv.slice(2);
if (!weir) throw new Error("usage: node resume.mjs WEIR_BINARY [POSTGRES_URL]");

const DEADLINE = 20_000;
const work = mkdtempSync(join(tmpdir(), "weir-resume-"));
const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function withDeadline(promise, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${DEADLINE} ms`)), DEADLINE);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

// Starts `weir serve` on `port` with its own data directory; resolves once it answers.
async function serve(port, name, extra = []) {
  const child = spawn(weir, [
    "serve", "--http-addr", `127.0.0.1:${port}`, "--line-addr", `127.0.0.1:${await freePort()}`,
    "--data-dir", join(work, name), "--log-level", "warn", ...extra,
  ], { stdio: ["ignore", "ignore", "inherit"] });
  children.add(child);
  child.on("exit", () => children.delete(child));
  await withDeadline((async () => {
    for (;;) {
      try {
        if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return;
      } catch {}
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })(), `answer from weir on port ${port}`);
  return child;
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.on("exit", resolve);
    child.kill("SIGKILL");
  });
}

async function publish(port, topic, text) {
  const answer = await fetch(`http://127.0.0.1:${port}/v1/topics/${topic}`, { method: "POST", body: text });
  if (answer.status !== 202) throw new Error(`publish ${text}: ${answer.status} ${await answer.text()}`);
  return answer.json();
}

// An EventSource on `url` that records what it receives; `until(predicate)` waits for it.
function subscribe(url) {
  const source = new EventSource(url);
  const seen = [];
  let wake = () => {};
  const record = (kind) => (event) => {
    seen.push({ kind, id: event.lastEventId, data: event.data });
    wake();
  };
  source.onmessage = record("message");
  source.addEventListener("reset", record("reset"));
  source.addEventListener("gap", record("gap"));
  source.onopen = record("open");
  const until = (predicate, what) => withDeadline(new Promise((resolve) => {
    const check = () => { if (predicate(seen)) resolve(seen); else wake = check; };
    check();
  }), what);
  return { source, seen, until };
}

const messages = (seen) => seen.filter((event) => event.kind === "message");
const opens = (seen) => seen.filter((event) => event.kind === "open").length;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// What the issue reproduced: ids 0-2 received, a restart, after-0 … after-4 published,
// then the client's own reconnect with Last-Event-ID. Everything must arrive, told by a
// reset, in order.
async function expectResetThenAll(client, oldEpoch, count) {
  const seen = await client.until(
    (seen) => messages(seen).filter((m) => m.data.startsWith("after-")).length >= count,
    `after-0 … after-${count - 1}`,
  );
  const resets = seen.filter((event) => event.kind === "reset");
  check(resets.length === 1, `one reset event, got ${JSON.stringify(seen)}`);
  const reset = JSON.parse(resets[0].data);
  check(reset.previous_epoch === oldEpoch && reset.epoch !== oldEpoch && reset.topic === "news",
    `the reset names both epochs: ${resets[0].data}`);
  const after = messages(seen).filter((m) => m.data.startsWith("after-"));
  after.forEach((message, n) => {
    check(message.data === `after-${n}`, `in order: ${JSON.stringify(after)}`);
    check(message.id.startsWith(`${reset.epoch}-`), `ids carry the new epoch: ${message.id}`);
  });
  check(seen.indexOf(resets[0]) < seen.indexOf(after[0]), "the reset comes first");
  return reset;
}

async function acrossARestart() {
  const port = await freePort();
  let server = await serve(port, "restart");
  const client = subscribe(`http://127.0.0.1:${port}/v1/topics/news/events`);
  await client.until((seen) => opens(seen) === 1, "open stream");
  let epoch;
  for (const n of [0, 1, 2]) epoch = (await publish(port, "news", `before-${n}`)).epoch;
  await client.until((seen) => messages(seen).length === 3, "before-0 … before-2");
  check(messages(client.seen).map((m) => m.id).join() === [0, 1, 2].map((n) => `${epoch}-${n}`).join(),
    `ids are EPOCH-OFFSET: ${JSON.stringify(client.seen)}`);

  await stop(server);
  server = await serve(port, "restart");
  for (const n of [0, 1, 2, 3, 4]) await publish(port, "news", `after-${n}`);
  await expectResetThenAll(client, epoch, 5);
  check(opens(client.seen) === 2, "the client reconnected on its own, once");
  client.source.close();
  await stop(server);
  console.log("resume across a restart: reset told, after-0 … after-4 delivered in order");
}

// A TCP proxy standing in for a load balancer: `switchTo(port)` sends new connections
// there and cuts the open ones, as a node's failure or a rebalance does.
async function balancer(firstPort) {
  let target = firstPort;
  const open = new Set();
  const server = createServer((client) => {
    const upstream = connect(target, "127.0.0.1");
    open.add(client);
    client.on("close", () => { open.delete(client); upstream.destroy(); });
    upstream.on("close", () => client.destroy());
    client.on("error", () => {});
    upstream.on("error", () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    port,
    switchTo(next) {
      target = next;
      for (const socket of open) socket.destroy();
    },
    close: () => server.close(),
  };
}

async function acrossTwoNodes() {
  const [portA, portB] = [await freePort(), await freePort()];
  const cluster = ["--database", database];
  const a = await serve(portA, "node-a", cluster);
  const b = await serve(portB, "node-b", cluster);
  const front = await balancer(portA);
  const client = subscribe(`http://127.0.0.1:${front.port}/v1/topics/news/events`);
  await client.until((seen) => opens(seen) === 1, "open stream");
  let epoch;
  for (const n of [0, 1, 2]) epoch = (await publish(portA, "news", `before-${n}`)).epoch;
  await client.until((seen) => messages(seen).length === 3, "before-0 … before-2");

  // The client lands on node B, whose offsets are its own: told, never silent.
  front.switchTo(portB);
  await client.until((seen) => seen.some((e) => e.kind === "reset"), "reset on node B");
  // Node A learns of B's new subscriber through the database, a moment later: until then
  // its messages are not sent to B (the relay is at most once). Warm up, then publish.
  await withDeadline((async () => {
    while (!messages(client.seen).some((m) => m.data === "warm-up")) {
      await publish(portA, "news", "warm-up");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })(), "relay from node A to node B");
  for (const n of [0, 1, 2, 3, 4]) await publish(portA, "news", `after-${n}`);
  await expectResetThenAll(client, epoch, 5);
  client.source.close();
  front.close();
  await Promise.all([stop(a), stop(b)]);
  console.log("resume on another node: reset told, after-0 … after-4 delivered in order");
}

// A durable topic is one log for the cluster: the client lands on another node and goes
// on exactly where it was, no reset, nothing missed or repeated.
async function durableAcrossTwoNodes() {
  const [portA, portB] = [await freePort(), await freePort()];
  const cluster = ["--database", database, "--durable", "orders.>"];
  const a = await serve(portA, "durable-a", cluster);
  const b = await serve(portB, "durable-b", cluster);
  const front = await balancer(portA);
  // A topic of its own: the database may hold earlier runs' topics.
  const topic = `orders.run${Date.now()}`;
  const client = subscribe(`http://127.0.0.1:${front.port}/v1/topics/${topic}/events`);
  await client.until((seen) => opens(seen) === 1, "open stream");
  let epoch;
  for (const n of [0, 1, 2]) {
    const answer = await publish(portA, topic, `order-${n}`);
    check(answer.offset === n, `a new topic's offsets start at 0: ${JSON.stringify(answer)}`);
    epoch = answer.epoch;
  }
  await client.until((seen) => messages(seen).length === 3, "order-0 … order-2");

  front.switchTo(portB);
  // Published while the client is away, on either node.
  await publish(portA, topic, "order-3");
  await publish(portB, topic, "order-4");
  await client.until((seen) => opens(seen) === 2, "reconnect on node B");
  await publish(portA, topic, "order-5");
  const seen = await client.until((seen) => messages(seen).length >= 6, "order-3 … order-5");
  check(!seen.some((e) => e.kind === "reset" || e.kind === "gap"), `no notice: ${JSON.stringify(seen)}`);
  const got = messages(seen).map((m) => `${m.id} ${m.data}`);
  const want = [0, 1, 2, 3, 4, 5].map((n) => `${epoch}-${n} order-${n}`);
  check(got.join() === want.join(), `exactly once, in order: ${JSON.stringify(got)}`);
  client.source.close();
  front.close();
  await Promise.all([stop(a), stop(b)]);
  console.log("durable topic on another node: resumed exactly, order-0 … order-5 once each");
}

await acrossARestart();
if (database) {
  await acrossTwoNodes();
  await durableAcrossTwoNodes();
} else console.log("resume on another node: skipped (no PostgreSQL URL given)");
process.exit(0);
