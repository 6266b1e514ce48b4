// The dashboard end to end, in headless Chromium: two pages chat with each other over
// WebSocket, a user of the TCP line protocol (as with nc) chats with them in the same room,
// a message published with curl appears on a page's topic viewer (SSE), and jobs enqueued
// with curl and from the page show their states live while a real `weir worker` runs them. With a
// token-protected server (second argument), the page asks for the token first.
//
// Usage: WEIR_E2E_LINE=127.0.0.1:PORT node dashboard.mjs http://127.0.0.1:PORT [TOKEN]

import { execFileSync, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { connect } from "node:net";
import { DEADLINE, launch } from "./browser.mjs";

const [base, token] = process.argv.slice(2);
const lineAddress = process.env.WEIR_E2E_LINE;
if (!base || !lineAddress) {
  throw new Error("usage: WEIR_E2E_LINE=HOST:PORT node dashboard.mjs BASE_URL [TOKEN]");
}

const browser = await launch();

const problems = [];
async function open(name) {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(DEADLINE);
  page.on("pageerror", (error) => problems.push(`${name}: ${error.message}`));
  page.on("console", (message) => {
    // A 401 before the token is entered is expected on the protected server.
    if (message.type() === "error" && !(token && /401/.test(message.text()))) {
      problems.push(`${name} console: ${message.text()}`);
    }
  });
  await page.goto(`${base}/`);
  if (token) {
    await page.locator("#token-form").waitFor({ state: "visible" });
    await page.fill("#token", token);
    await page.click("#token-form button");
    await page.locator("#token-form").waitFor({ state: "hidden" });
  }
  return page;
}

async function join(page, nick, room) {
  await page.fill("#nick", nick);
  await page.fill("#room", room);
  await page.click("#join-form button");
  await page.locator("#say-text:enabled").waitFor();
}

async function say(page, text) {
  await page.fill("#say-text", text);
  await page.press("#say-text", "Enter");
}

const seen = (page, list, text) => page.locator(`${list} li`, { hasText: text }).waitFor();

/// A line-protocol client, as a person with nc would be: sends lines, waits for one.
function lineClient(address) {
  const [host, port] = address.split(":");
  const socket = connect({ host, port: Number(port) });
  socket.setEncoding("utf8");
  const lines = [];
  let waiting = null;
  let partial = "";
  socket.on("data", (chunk) => {
    partial += chunk;
    let end;
    while ((end = partial.indexOf("\r\n")) >= 0) {
      lines.push(partial.slice(0, end));
      partial = partial.slice(end + 2);
    }
    if (waiting) waiting();
  });
  return {
    send: (line) => socket.write(`${line}\r\n`),
    // Resolves with the first line (seen so far or to come) that starts with `prefix`.
    expect: (prefix) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`line client: no "${prefix}" in ${JSON.stringify(lines)}`)), DEADLINE);
      const check = () => {
        const index = lines.findIndex((line) => line.startsWith(prefix));
        if (index >= 0) {
          clearTimeout(timer);
          waiting = null;
          resolve(lines.splice(index, 1)[0]);
        }
      };
      waiting = check;
      check();
    }),
    close: () => socket.end(),
  };
}

try {
  const alice = await open("alice");
  const bob = await open("bob");

  await join(alice, "alice", "lobby");
  await join(bob, "bob", "lobby");
  await seen(alice, "#chat", "bob joined lobby");
  await say(alice, "hello bob");
  await seen(bob, "#chat", "hello bob");
  await say(bob, "hi alice");
  await seen(alice, "#chat", "hi alice");
  await alice.locator("#presence", { hasText: "bob" }).waitFor();

  // Across transports: carol on the line protocol joins the room the browsers are in.
  {
    const carol = lineClient(lineAddress);
    await carol.expect("+OK weir line protocol");
    if (token) {
      carol.send(`AUTH ${token}`);
      await carol.expect("+OK authenticated");
    }
    carol.send("NICK carol");
    await carol.expect("+OK you are carol");
    carol.send("JOIN lobby");
    await carol.expect("+OK joined lobby");
    await seen(alice, "#chat", "carol joined lobby");
    carol.send("SAY lobby hello from the terminal");
    await seen(bob, "#chat", "hello from the terminal");
    await say(alice, "hi carol");
    await carol.expect("MSG lobby alice hi carol");
    carol.close();
    await seen(bob, "#chat", "carol left lobby");
  }

  // The topic viewer: watch, then publish from outside the browser with curl.
  await alice.fill("#watch-topic", "news");
  await alice.click("#watch-form button");
  const auth = token ? ["-H", `Authorization: Bearer ${token}`] : [];
  execFileSync("curl", ["-sSf", "--max-time", "10", ...auth, "--data-binary", "breaking <b>from</b> curl",
    `${base}/v1/topics/news`]);
  await seen(alice, "#events", "breaking <b>from</b> curl"); // shown as text, not HTML
  await alice.locator("#topics tbody tr", { hasText: "news" }).waitFor();

  // Publishing from the page reaches a second viewer too.
  await bob.fill("#watch-topic", "news");
  await bob.click("#watch-form button");
  await seen(bob, "#events", "breaking");
  await alice.fill("#publish-payload", "from the page");
  await alice.click("#publish-form button");
  await seen(bob, "#events", "from the page");

  // Jobs: enqueued with curl, run by a real `weir worker`, their states change live.
  execFileSync("curl", ["-sSf", "--max-time", "10", ...auth, "-H", "content-type: application/json",
    "--data-binary", '{"queue": "e2e", "kind": "sleep", "payload": {"ms": 1500}}', `${base}/v1/jobs`]);
  const jobRow = (page, kind, state) =>
    page.locator("#jobs tbody tr", { hasText: kind }).locator(`td.state[data-state="${state}"]`).waitFor();
  await jobRow(alice, "sleep", "available");
  await alice.locator("#queues tbody tr", { hasText: "e2e" }).waitFor();
  const worker = spawn(process.env.WEIR_BIN || "target/debug/weir",
    ["worker", "--server", base, "--queues", "e2e", "--log-level", "warn", ...(token ? ["--token", token] : [])],
    { stdio: "ignore" });
  try {
    await jobRow(alice, "sleep", "running");
    await jobRow(alice, "sleep", "completed");
    // Enqueued from the page: the worker runs it, and the other page sees it finish.
    await alice.fill("#enqueue-queue", "e2e");
    await alice.fill("#enqueue-kind", "echo");
    await alice.fill("#enqueue-payload", '{"from": "the page"}');
    await alice.click("#enqueue-form button");
    await alice.locator("#jobs-live", { hasText: "Enqueued job" }).waitFor();
    await jobRow(bob, "echo", "completed");
  } finally {
    worker.kill("SIGKILL");
  }

  mkdirSync("target/e2e", { recursive: true });
  await alice.screenshot({ path: `target/e2e/dashboard${token ? "-token" : ""}.png`, fullPage: true });
  if (problems.length) throw new Error(`page errors:\n${problems.join("\n")}`);
  console.log(`dashboard e2e passed: browsers and a line-protocol user chat, jobs run live${token ? " (with a token)" : ""}`);
} finally {
  await browser.close();
}
