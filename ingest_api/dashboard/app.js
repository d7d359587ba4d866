// logstream dashboard: reads /v1/status and the view APIs every few seconds and draws its
// charts as SVG itself (no library, no network access beyond this server).
"use strict";

const REFRESH_MS = Number(new URLSearchParams(location.search).get("refresh")) || 2000;
const MINUTE = 60000;
const SVG = "http://www.w3.org/2000/svg";
let previous = null;   // the last /v1/status answer, for rates
let chosenUrl = "";    // the URL charted (empty: the top URL)

const $ = (id) => document.getElementById(id);
const fmt = (n, digits = 0) =>
  n === null || n === undefined || Number.isNaN(n) ? "–" : Number(n).toLocaleString("en-US", {
    maximumFractionDigits: digits, minimumFractionDigits: digits });

// With API keys on, a page cannot send a bearer header by itself: the first 401 asks for a
// key once, kept in this tab's sessionStorage (never in the URL, gone with the tab) and sent
// with every fetch to this server.
const KEY_ITEM = "logstream.api_key";
let askedForKey = false;

async function getJson(path) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_ITEM);
    const headers = { accept: "application/json" };
    if (key) headers.authorization = `Bearer ${key}`;
    const response = await fetch(path, { headers });
    if (response.status === 401) {
      if (sessionStorage.getItem(KEY_ITEM) !== key) continue;  // given meanwhile: retry
      if (!askedForKey) {
        askedForKey = true;
        const given = window.prompt("API key for this server (kept for this tab only)");
        if (given) {
          sessionStorage.setItem(KEY_ITEM, given.trim());
          continue;
        }
      }
    }
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }
}

function rate(now, before, pick) {
  if (!before) return null;
  const seconds = (now.time_ms - before.time_ms) / 1000;
  const a = pick(now), b = pick(before);
  if (seconds <= 0 || a === null || b === null || a === undefined || b === undefined) return null;
  return Math.max(0, (a - b) / seconds);
}

function renderIngest(status) {
  const ingest = status.ingest;
  if (!ingest) {
    for (const id of ["ingest-rate", "reject-rate", "error-rate", "ingest-accepted-total", "ingest-rejected-total"]) $(id).textContent = "metrics off";
    return;
  }
  $("ingest-accepted-total").textContent = fmt(ingest.events_accepted);
  $("ingest-accepted-total").dataset.value = ingest.events_accepted;
  $("ingest-rejected-total").textContent = fmt(ingest.events_rejected);
  $("ingest-rejected-total").dataset.value = ingest.events_rejected;
  // The two answers the rates come from, and the raw numbers, for tests and tools.
  $("ingest").dataset.time = status.time_ms;
  $("ingest").dataset.previous = previous ? previous.time_ms : "";
  const accepted = rate(status, previous, (s) => s.ingest && s.ingest.events_accepted);
  const rejected = rate(status, previous, (s) => s.ingest && s.ingest.events_rejected);
  shown("ingest-rate", fmt(accepted, 1), accepted);
  shown("reject-rate", fmt(rejected, 1), rejected);
  const requests = rate(status, previous, (s) => s.ingest && s.ingest.requests);
  const errors = rate(status, previous, (s) => s.ingest && s.ingest.errors);
  const share = requests ? (100 * errors) / requests : 0;
  shown("error-rate", `${fmt(share, 1)} %`, share);
}

function shown(id, text, value) {
  $(id).textContent = text;
  $(id).dataset.value = value === null || value === undefined ? "" : value;
}

function cell(row, cls, text, value) {
  const td = document.createElement("td");
  td.className = cls;
  td.textContent = text;
  if (value !== undefined && value !== null) td.dataset.value = value;
  row.appendChild(td);
  return td;
}

function renderViews(status) {
  $("views").dataset.time = status.time_ms;
  const before = new Map((previous ? previous.views : []).map((v) => [v.view, v]));
  const rows = status.views.map((v) => {
    const row = document.createElement("tr");
    row.dataset.view = v.view;
    if (v.lag_seconds > 0) row.className = "behind";
    cell(row, "name", v.name);
    cell(row, "version", v.version + (v.current ? " (current)" : ""), v.version);
    cell(row, "lag-offsets", fmt(v.lag_offsets), v.lag_offsets);
    cell(row, "lag-seconds", fmt(v.lag_seconds, 1), v.lag_seconds);
    cell(row, "applied", fmt(v.applied), v.applied);
    const old = before.get(v.view);
    const perSecond = old ? rate(status, previous, (s) => (s === status ? v.applied : old.applied)) : null;
    cell(row, "events-rate", fmt(perSecond, 1), perSecond);
    cell(row, "dead-letters", fmt(v.dead_letters), v.dead_letters);
    const progress = cell(row, "progress", "", v.progress);
    const pct = v.progress === null ? 0 : Math.round(v.progress * 1000) / 10;
    progress.innerHTML = `<span class="bar"><span style="width:${pct}%"></span></span> ${pct}%`;
    return row;
  });
  $("view-rows").replaceChildren(...rows);
}

function renderTop(items) {
  const list = items.map((item) => {
    const li = document.createElement("li");
    li.dataset.url = item.url;
    li.dataset.count = item.count;
    const link = document.createElement("a");
    link.href = "#";
    link.textContent = item.url;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      chosenUrl = item.url;
      $("url-input").value = item.url;
      refreshChart();
    });
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = fmt(item.count);
    li.append(link, count);
    return li;
  });
  $("top-urls").replaceChildren(...list);
}

function renderWindows(url, since, windows) {
  const box = $("window-chart");
  const width = 600, height = 180, left = 36, bottom = 20;
  const counts = new Map(windows.map((w) => [Date.parse(w.start), w.count]));
  const slots = [];
  for (let t = since; t < since + 60 * MINUTE; t += MINUTE) slots.push([t, counts.get(t) || 0]);
  const max = Math.max(1, ...slots.map((s) => s[1]));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const barWidth = (width - left) / slots.length;
  slots.forEach(([t, count], i) => {
    const h = ((height - bottom - 10) * count) / max;
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", left + i * barWidth + 1);
    rect.setAttribute("y", height - bottom - h);
    rect.setAttribute("width", Math.max(1, barWidth - 2));
    rect.setAttribute("height", h);
    rect.setAttribute("fill", "#3d7be0");
    rect.dataset.start = new Date(t).toISOString();
    rect.dataset.count = count;
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${new Date(t).toISOString().slice(11, 16)} UTC: ${count}`;
    rect.appendChild(title);
    svg.appendChild(rect);
  });
  for (const [y, label] of [[height - bottom, "0"], [10, String(max)]]) {
    const text = document.createElementNS(SVG, "text");
    text.setAttribute("x", 2);
    text.setAttribute("y", y);
    text.textContent = label;
    svg.appendChild(text);
  }
  for (const i of [0, 30, 59]) {
    const text = document.createElementNS(SVG, "text");
    text.setAttribute("x", left + i * barWidth + (i === 59 ? barWidth : 0));
    text.setAttribute("y", height - 4);
    if (i === 59) text.setAttribute("text-anchor", "end");
    text.textContent = new Date(slots[i][0]).toISOString().slice(11, 16);
    svg.appendChild(text);
  }
  box.dataset.url = url;
  box.dataset.total = slots.reduce((sum, s) => sum + s[1], 0);
  box.replaceChildren(svg);
}

async function refreshChart() {
  const top = await getJson("/v1/views/likes-by-url/top?limit=10");
  renderTop(top.items);
  const url = chosenUrl || (top.items[0] && top.items[0].url);
  if (!url) {
    $("window-chart").textContent = "no likes yet";
    return;
  }
  const until = Math.floor(Date.now() / MINUTE) * MINUTE + MINUTE;
  const since = until - 60 * MINUTE;
  const params = new URLSearchParams({ size: "1m", url, since: String(since), until: String(until), limit: "100" });
  const answer = await getJson(`/v1/views/likes-by-window?${params}`);
  renderWindows(url, since, answer.windows);
}

async function refresh() {
  try {
    const status = await getJson("/v1/status");
    renderIngest(status);
    renderViews(status);
    await refreshChart();
    previous = status;
    $("updated").textContent = `updated ${new Date(status.time_ms).toISOString().slice(11, 19)} UTC`;
    $("updated").dataset.time = status.time_ms;
    $("problem").hidden = true;
  } catch (error) {
    $("problem").textContent = String(error.message || error);
    $("problem").hidden = false;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

$("url-form").addEventListener("submit", (event) => {
  event.preventDefault();
  chosenUrl = $("url-input").value.trim();
  refreshChart().catch((error) => { $("problem").textContent = String(error); $("problem").hidden = false; });
});
refresh();
