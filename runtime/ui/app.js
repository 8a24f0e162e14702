// weir's console: reads the public API only (what a script can read, it shows), and sends the
// admin token, kept in this tab's session storage, with whatever changes something.

const HISTORY = 300; // seconds of rates kept per pipeline, for the chart
const history = new Map(); // name -> [{at, in, out}]
let chosen = null;
let cursor = null;

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem("weir-token") || "";

async function call(method, path) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, { method, headers });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  return { status: response.status, body };
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

const number = (n) => (n === null || n === undefined ? "?" : Math.round(n).toLocaleString("en"));

function remember(p) {
  const seen = history.get(p.name) || [];
  seen.push({ at: Date.now(), in: p.rate_in || 0, out: p.rate_out || 0 });
  while (seen.length > HISTORY) seen.shift();
  history.set(p.name, seen);
}

function drawChart(name) {
  const svg = $("chart");
  const seen = history.get(name) || [];
  const top = Math.max(1, ...seen.map((s) => Math.max(s.in, s.out)));
  // The newest reading at the right edge, one second a step.
  const x = (i) => 600 - (seen.length - 1 - i) * (600 / (HISTORY - 1));
  const line = (key) => seen.map((s, i) => `${x(i)},${158 - (s[key] / top) * 140}`).join(" ");
  svg.innerHTML =
    `<polyline points="${line("in")}" fill="none" stroke="#0969da" stroke-width="2"/>` +
    `<polyline points="${line("out")}" fill="none" stroke="#bf3989" stroke-width="2"/>` +
    `<text x="4" y="14" font-size="12" fill="#57606a">${number(top)}/s</text>`;
  svg.dataset.points = String(seen.length);
  svg.dataset.last = seen.length ? String(seen[seen.length - 1].in) : "0";
}

function renderList(pipelines) {
  const body = $("pipelines").tBodies[0];
  body.replaceChildren();
  $("no-pipelines").hidden = pipelines.length > 0;
  for (const p of pipelines) {
    remember(p);
    const row = body.insertRow();
    row.dataset.name = p.name;
    if (p.name === chosen) row.className = "chosen";
    cell(row, p.name);
    cell(row, p.status, `status-${p.status}`);
    cell(row, p.version);
    cell(row, (p.digest || "").slice(0, 12));
    cell(row, number(p.rate_in), "num");
    cell(row, number(p.rate_out), "num");
    cell(row, number(p.lag), "num");
    cell(row, number(p.dead_lettered), "num");
    row.addEventListener("click", () => choose(p.name));
  }
  if (!chosen && pipelines.length) choose(pipelines[0].name);
  const current = pipelines.find((p) => p.name === chosen);
  if (current) renderDetail(current);
}

function renderDetail(p) {
  $("detail").hidden = false;
  $("detail-name").textContent = `${p.name} (${p.status}, version ${p.version ?? "?"})`;
  $("detail").dataset.status = p.status;
  const failure = $("failure");
  failure.hidden = !p.error;
  failure.textContent = p.error ? `failed (${p.fault || "?"}'s fault): ${p.error}` : "";
  const notice = $("notice");
  notice.hidden = !p.notice;
  notice.textContent = p.notice || "";
  const restore = $("restore");
  restore.hidden = !p.restore;
  if (p.restore) {
    const r = p.restore;
    const share = r.total ? Math.round((r.restored * 100) / r.total) : 0;
    restore.textContent = `restoring partitions ${r.partitions.join(", ")}: ${number(r.restored)} of ${number(r.total)} records (${share}%)`;
  }
  const parts = $("partitions").tBodies[0];
  parts.replaceChildren();
  for (const q of p.partitions || []) {
    const row = parts.insertRow();
    cell(row, q.topic);
    cell(row, q.partition, "num");
    cell(row, number(q.lag), "num");
    cell(row, q.thread ?? "");
    cell(row, q.restoring ? "restoring" : "");
  }
  drawChart(p.name);
}

async function refreshInstances(name) {
  const { status, body } = await call("GET", `/v1/pipelines/${encodeURIComponent(name)}/instances`);
  const rows = $("instances").tBodies[0];
  rows.replaceChildren();
  if (status !== 200 || !body) return;
  for (const m of body.members || []) {
    const row = rows.insertRow();
    cell(row, m.instance + (m.instance === body.instance ? " (this one)" : ""));
    cell(row, m.url);
    cell(row, (m.partitions || []).join(", "));
  }
}

async function refreshLogs(name) {
  const { status, body } = await call("GET", `/v1/pipelines/${encodeURIComponent(name)}/logs?limit=50`);
  if (status !== 200 || !body) return;
  if (!body.lines.length) {
    $("logs").textContent = "(nothing logged yet)";
    return;
  }
  $("logs").textContent = body.lines
    .map((l) => {
      const at = new Date(l.at_ms).toISOString();
      const where = l.offsets ? `${l.topic}[${l.partition}]@${l.offsets[0]}` : `${l.topic}[${l.partition}]`;
      return `${at} ${l.level.toUpperCase().padEnd(5)} ${where} ${l.message}`;
    })
    .join("\n") + (body.dropped ? `\n(${body.dropped} lines dropped by the rate limit)` : "");
}

function choose(name) {
  chosen = name;
  cursor = null;
  $("state").tBodies[0].replaceChildren();
  $("state-said").textContent = "";
  $("answer").textContent = "";
  for (const row of $("pipelines").tBodies[0].rows) row.className = row.dataset.name === name ? "chosen" : "";
  probeState(name);
  refreshInstances(name);
  refreshLogs(name);
}

async function probeState(name) {
  const { status } = await call("GET", `/v1/pipelines/${encodeURIComponent(name)}/state?limit=1`);
  $("state-browser").hidden = status === 404 || status === 400;
}

async function lookUp(more) {
  const name = chosen;
  if (!name) return;
  const key = $("state-key").value;
  const rows = $("state").tBodies[0];
  if (!more) { rows.replaceChildren(); cursor = null; }
  const show = (entry) => {
    const row = rows.insertRow();
    cell(row, entry.key ?? entry.key_base64);
    cell(row, typeof entry.value === "string" ? entry.value : JSON.stringify(entry.value));
    cell(row, entry.partition, "num");
  };
  if (key && !more) {
    const { status, body } = await call("GET", `/v1/pipelines/${encodeURIComponent(name)}/state/${encodeURIComponent(key)}`);
    if (status === 200) show(body);
    $("state-said").textContent = status === 200 ? "" : (body && body.error) || `answered ${status}`;
    $("state-more").hidden = true;
    return;
  }
  const prefix = encodeURIComponent($("state-prefix").value);
  const after = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
  const { status, body } = await call("GET", `/v1/pipelines/${encodeURIComponent(name)}/state?prefix=${prefix}&limit=20${after}`);
  if (status !== 200) {
    $("state-said").textContent = (body && body.error) || `answered ${status}`;
    return;
  }
  body.entries.forEach(show);
  cursor = body.next;
  $("state-more").hidden = !cursor;
  $("state-said").textContent = rows.rows.length ? "" : "no entries";
}

async function act(action) {
  const name = chosen;
  if (!name) return;
  if (!token()) { $("answer").textContent = "give the admin token first"; return; }
  const path = `/v1/pipelines/${encodeURIComponent(name)}`;
  const { status, body } = action === "undeploy" ? await call("DELETE", path) : await call("POST", `${path}/${action}`);
  $("answer").textContent = status < 300 ? `${action}: ${JSON.stringify(body)}` : `${action} refused (${status}): ${(body && body.error) || ""}`;
  $("answer").dataset.status = String(status);
}

async function tick() {
  const { status, body } = await call("GET", "/v1/pipelines");
  if (status === 200 && body) {
    renderList(body.pipelines);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } else {
    $("updated").textContent = `the API answered ${status}${body && body.error ? `: ${body.error}` : ""}`;
  }
}

function start() {
  $("token").value = token();
  $("token-state").textContent = token() ? "kept" : "";
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("weir-token", $("token").value.trim());
    $("token-state").textContent = "kept";
  });
  $("state-form").addEventListener("submit", (e) => { e.preventDefault(); lookUp(false); });
  $("state-more").addEventListener("click", () => lookUp(true));
  for (const button of document.querySelectorAll("#actions button")) {
    button.addEventListener("click", () => act(button.dataset.action));
  }
  tick();
  setInterval(tick, 1000);
  setInterval(() => { if (chosen) { refreshLogs(chosen); refreshInstances(chosen); } }, 3000);
}

start();
