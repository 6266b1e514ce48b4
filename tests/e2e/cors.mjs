// CORS in a real browser: a page served from another origin (a second loopback port) uses
// Weir's API with a bearer token, publishes and reads a message over Server-Sent Events
// when Weir lists that origin (http.cors_origins), and is stopped by the browser itself
// when it does not.
//
// Usage: node cors.mjs WEIR_BASE_URL TOKEN ALLOWED_PAGE_PORT OTHER_PAGE_PORT

import { createServer } from "node:http";
import { DEADLINE, launch } from "./browser.mjs";

const [weir, token, allowedPort, otherPort] = process.argv.slice(2);
if (!weir || !token || !allowedPort || !otherPort) {
  throw new Error("usage: node cors.mjs WEIR_BASE_URL TOKEN ALLOWED_PORT OTHER_PORT");
}

// The app's page: nothing but an origin of its own; the test drives it through evaluate.
function servePage(port) {
  const server = createServer((_, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end("<!doctype html><title>app</title><p>app</p>");
  });
  return new Promise((resolve) => server.listen(Number(port), "127.0.0.1", () => resolve(server)));
}

const pages = [await servePage(allowedPort), await servePage(otherPort)];
const browser = await launch();

// In a page of `origin`: publish with a bearer token (a preflighted request), then read
// it back over SSE (a cross-origin EventSource, token in the query). Returns what worked.
async function tryFrom(origin) {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(DEADLINE);
  await page.goto(`${origin}/`);
  return page.evaluate(async ({ weir, token, deadline }) => {
    const result = { published: null, received: null };
    try {
      const answer = await fetch(`${weir}/v1/topics/cors.test`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "text/plain" },
        body: `from ${location.origin}`,
      });
      result.published = answer.status;
    } catch (error) {
      result.published = `blocked: ${error.message}`;
    }
    result.received = await new Promise((resolve) => {
      const source = new EventSource(`${weir}/v1/topics/cors.test/events?from=earliest&token=${token}`);
      const timer = setTimeout(() => { source.close(); resolve("timeout"); }, deadline);
      source.onmessage = (event) => { clearTimeout(timer); source.close(); resolve(event.data); };
      source.onerror = () => { clearTimeout(timer); source.close(); resolve("blocked"); };
    });
    return result;
  }, { weir, token, deadline: DEADLINE / 2 });
}

const allowed = await tryFrom(`http://127.0.0.1:${allowedPort}`);
const other = await tryFrom(`http://127.0.0.1:${otherPort}`);
await browser.close();
pages.forEach((server) => server.close());

const problems = [];
if (allowed.published !== 202) problems.push(`listed origin could not publish: ${allowed.published}`);
if (allowed.received !== `from http://127.0.0.1:${allowedPort}`) {
  problems.push(`listed origin did not read its message over SSE: ${allowed.received}`);
}
if (typeof other.published !== "string" || !other.published.startsWith("blocked")) {
  problems.push(`another origin was not stopped from publishing: ${other.published}`);
}
if (other.received !== "blocked") problems.push(`another origin read the stream: ${other.received}`);
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log("cors e2e passed: a listed origin publishes and reads over SSE, another is stopped by the browser");
