// The Weir dashboard: a live topic viewer over Server-Sent Events, a chat room over
// WebSocket, and jobs whose states change live (lifecycle events on the $queues.> system topics). Plain browser APIs, no build step; served from the binary itself.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX_LINES = 500; // each log keeps the newest lines only, so a busy topic cannot grow the page forever

let token = localStorage.getItem("weir.token") || "";

function withToken(url) {
  return token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

function needToken(why) {
  $("token-form").hidden = false;
  setStatus("error", why);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) needToken("this server needs a token");
  return response;
}

function append(list, parts, className) {
  const item = document.createElement("li");
  if (className) item.className = className;
  for (const [text, cls] of parts) {
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text; // never innerHTML: payloads are untrusted
    item.append(span);
  }
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(item);
  while (list.children.length > MAX_LINES) list.firstElementChild.remove();
  if (stick) list.scrollTop = list.scrollHeight;
}

// ---- topics ---------------------------------------------------------------

async function refreshTopics() {
  try {
    const response = await api("/v1/topics");
    if (!response.ok) return;
    const { topics } = await response.json();
    const body = $("topics").querySelector("tbody");
    body.replaceChildren(...topics.map((t) => {
      const row = document.createElement("tr");
      for (const value of [t.topic, t.next_offset, t.subscribers]) {
        const cell = document.createElement("td");
        cell.textContent = value;
        row.append(cell);
      }
      row.addEventListener("click", () => watch(t.topic));
      return row;
    }));
    $("topics-empty").hidden = topics.length > 0;
  } catch (error) {
    setStatus("error", "server unreachable");
  }
}

let source = null;

function watch(topic) {
  if (source) source.close();
  $("watch-topic").value = topic;
  $("publish-topic").value = topic.includes("*") || topic.includes(">") ? "" : topic;
  $("events").replaceChildren();
  $("watching").textContent = `Watching ${topic} from its earliest retained message.`;
  source = new EventSource(withToken(`/v1/topics/${encodeURIComponent(topic)}/events?from=earliest`));
  source.onmessage = (event) => {
    // Ids are positions, EPOCH-OFFSET; a pattern stream's are topic:EPOCH-OFFSET.
    const id = event.lastEventId;
    const colon = id.lastIndexOf(":");
    const offset = id.slice(id.lastIndexOf("-") + 1);
    const label = colon >= 0 ? `${id.slice(0, colon)} #${offset}` : `#${offset}`;
    append($("events"), [[label, "meta"], [event.data]]);
  };
  source.addEventListener("gap", (event) => {
    const gap = JSON.parse(event.data);
    append($("events"), [[`offsets ${gap.from}–${gap.to} of ${gap.topic} are no longer retained`]], "notice");
  });
  source.addEventListener("reset", (event) => {
    const reset = JSON.parse(event.data);
    const what = reset.topic
      ? `${reset.topic} started its offsets again (a restart or another node); messages since the last one shown may be missing`
      : `the stream reconnected; ${reset.reason}`;
    append($("events"), [[what]], "notice");
  });
  source.addEventListener("lagged", (event) => {
    const lag = JSON.parse(event.data);
    append($("events"), [[`this viewer fell behind and skipped ${lag.missed} messages of ${lag.topic}`]], "notice");
  });
  source.onerror = () => append($("events"), [["stream interrupted; the browser reconnects and resumes"]], "notice");
}

$("watch-form").addEventListener("submit", (event) => {
  event.preventDefault();
  watch($("watch-topic").value.trim());
});

$("publish-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const topic = $("publish-topic").value.trim();
  const response = await api(`/v1/topics/${encodeURIComponent(topic)}`, {
    method: "POST",
    body: $("publish-payload").value,
  });
  if (response.ok) {
    $("publish-payload").value = "";
  } else {
    const { error } = await response.json().catch(() => ({ error: response.statusText }));
    append($("events"), [[`publish failed: ${error}`]], "error");
  }
  refreshTopics();
});

// ---- chat -----------------------------------------------------------------

let socket = null;
let room = null;

function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

function onFrame(frame) {
  if (Array.isArray(frame)) return frame.forEach(onFrame);
  switch (frame.type) {
    case "chat":
      if (frame.kind === "say") append($("chat"), [[frame.nick, "meta"], [frame.text]]);
      else append($("chat"), [[`${frame.nick} ${frame.kind === "join" ? "joined" : "left"} ${frame.room}`]], "notice");
      if (frame.kind !== "say") send({ op: "who", room: frame.room });
      break;
    case "ok":
      if (/^joined /.test(frame.message)) {
        $("say-text").disabled = false;
        $("say-form").querySelector("button").disabled = false;
        $("say-text").focus();
      }
      if (/^[^ ]+: /.test(frame.message) && !/^you are /.test(frame.message)) {
        $("presence").textContent = `Here: ${frame.message.split(": ")[1]}`;
      }
      break;
    case "error":
      append($("chat"), [[frame.message]], "error");
      break;
  }
}

function connectChat(nick, wanted) {
  if (socket) socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(withToken(`${scheme}://${location.host}/v1/ws`));
  socket.onopen = () => {
    setStatus("live", "live");
    send({ op: "nick", nick });
    send({ op: "join", room: wanted });
    send({ op: "who", room: wanted });
    room = wanted;
    $("presence").textContent = `In ${wanted} as ${nick}.`;
  };
  socket.onmessage = (event) => onFrame(JSON.parse(event.data));
  socket.onclose = () => {
    $("say-text").disabled = true;
    $("say-form").querySelector("button").disabled = true;
    append($("chat"), [["disconnected"]], "notice");
  };
}

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("chat").replaceChildren();
  connectChat($("nick").value.trim(), $("room").value.trim());
});

$("say-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("say-text").value;
  if (text.trim() && room) send({ op: "say", room, text });
  $("say-text").value = "";
});

// ---- jobs -----------------------------------------------------------------

const MAX_JOB_ROWS = 100; // the table shows the newest jobs; older ones are a query away
const QUEUE_STATES = ["scheduled", "available", "running", "retrying", "completed", "discarded", "cancelled"];

async function refreshQueues() {
  const response = await api("/v1/queues").catch(() => null);
  if (!response || !response.ok) return;
  const { queues } = await response.json();
  const names = Object.keys(queues).sort();
  $("queues").querySelector("tbody").replaceChildren(...names.map((name) => {
    const row = document.createElement("tr");
    for (const value of [name, ...QUEUE_STATES.map((state) => queues[name][state] || 0)]) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    return row;
  }));
  $("queues-empty").hidden = names.length > 0;
}

function jobRow(job) {
  let row = document.getElementById(`job-${job.id}`);
  if (!row) {
    row = document.createElement("tr");
    row.id = `job-${job.id}`;
    row.dataset.id = job.id;
    const body = $("jobs").querySelector("tbody");
    // Newest (highest id) first.
    const after = [...body.children].find((other) => Number(other.dataset.id) < job.id);
    body.insertBefore(row, after || null);
    while (body.children.length > MAX_JOB_ROWS) body.lastElementChild.remove();
  }
  return row;
}

function showJob(job) {
  const row = jobRow(job);
  // Events and the initial list can cross: never go back to an older version of a job.
  if (row.dataset.updated && row.dataset.updated > job.updated_at) return;
  row.dataset.updated = job.updated_at;
  const progress = job.progress ? `${Math.round(job.progress.percent)}% ${job.progress.message || ""}` : "";
  const error = job.errors && job.errors.length ? job.errors[job.errors.length - 1].error : "";
  const updated = job.updated_at.replace("T", " ").replace(/\.\d+Z$/, "");
  const cells = [job.id, job.queue, job.kind, job.state, `${job.attempt}/${job.max_attempts}`, progress || error, updated];
  row.replaceChildren(...cells.map((value, index) => {
    const cell = document.createElement("td");
    cell.textContent = value; // never innerHTML: kinds and messages come from clients
    if (index === 3) {
      cell.className = "state";
      cell.dataset.state = value;
    }
    return cell;
  }));
  const finished = ["completed", "cancelled", "discarded"].includes(job.state);
  const button = document.createElement("button");
  button.className = "small";
  button.textContent = finished ? "retry" : (job.cancel_requested ? "cancelling" : "cancel");
  button.disabled = Boolean(job.cancel_requested) && !finished;
  button.addEventListener("click", () => api(`/v1/jobs/${job.id}/${finished ? "retry" : "cancel"}`, { method: "POST" }));
  const actions = document.createElement("td");
  actions.append(button);
  row.append(actions);
}

async function loadJobs() {
  const response = await api("/v1/jobs?limit=50").catch(() => null);
  if (!response || !response.ok) return;
  const { jobs } = await response.json();
  jobs.forEach(showJob);
}

let jobEvents = null;
let queuesDirty = false;

function watchJobs() {
  if (jobEvents) jobEvents.close();
  // Every job's lifecycle on every queue, through one pattern subscription.
  jobEvents = new EventSource(withToken("/v1/topics/$queues.>/events"));
  jobEvents.onopen = () => loadJobs();
  jobEvents.onmessage = (event) => {
    // Events carry no payload, result or error text: a failed attempt's error is read
    // with the job itself.
    const { job } = JSON.parse(event.data);
    if (job.failed_attempts > 0 && ["retrying", "discarded"].includes(job.state)) {
      api(`/v1/jobs/${job.id}`).then((response) => response.ok && response.json()).then((full) => full && showJob(full)).catch(() => {});
    }
    showJob(job);
    queuesDirty = true;
  };
}

$("enqueue-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  let payload;
  try {
    payload = JSON.parse($("enqueue-payload").value || "{}");
  } catch (error) {
    $("jobs-live").textContent = `payload is not JSON: ${error.message}`;
    return;
  }
  const body = { queue: $("enqueue-queue").value.trim(), kind: $("enqueue-kind").value.trim(), payload };
  const response = await api("/v1/jobs", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const reply = await response.json().catch(() => ({ error: response.statusText }));
  $("jobs-live").textContent = response.ok ? `Enqueued job ${reply.id}.` : `enqueue failed: ${reply.error}`;
});

// ---- token ----------------------------------------------------------------

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  localStorage.setItem("weir.token", token);
  $("token-form").hidden = true;
  setStatus("connecting", "connecting…");
  refreshTopics();
  refreshQueues();
  watchJobs();
});

// ---- start ----------------------------------------------------------------

(async () => {
  const health = await fetch("/healthz").catch(() => null);
  setStatus(health && health.ok ? "live" : "error", health && health.ok ? "live" : "server unreachable");
  await refreshTopics();
  setInterval(refreshTopics, 2000);
  await refreshQueues();
  watchJobs();
  // Counts follow the events, at most once a second, and every 5 s for other nodes' work.
  setInterval(() => {
    if (queuesDirty) {
      queuesDirty = false;
      refreshQueues();
    }
  }, 1000);
  setInterval(refreshQueues, 5000);
})();
