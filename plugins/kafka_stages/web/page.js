// The Order metrics page: reads the plugin's JSON endpoints and draws them with Plotly.
// Each section loads on its own, so Kafka being away leaves the metrics on screen.
"use strict";

const BASE = document.body.dataset.base;
const UI = document.body.dataset.ui;
const form = document.getElementById("range");
let newestEnd = null; // end of the newest window in the store, for the presets

const escape = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const utc = (iso) => (iso ? iso.replace("T", " ").replace(/(\.\d+)?Z$/, "") : "");
const cells = (values) => values.map((v) => `<td>${v}</td>`).join("");
const number = (v) => `<td class="n">${escape(v)}</td>`;

async function getJSON(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v));
  const response = await fetch(`${BASE}${path}${query.size ? "?" + query : ""}`, { credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ? String(body.detail) : `${response.status} ${response.statusText}`);
  return body;
}

// Loads one section: its JSON, then render(body); a failure shows in the section's status line.
async function load(statusId, path, render, params = {}) {
  let body;
  try {
    body = await getJSON(path, params);
  } catch (error) {
    status(statusId, error.message, true);
    return;
  }
  await render(body);
}

function status(id, text, error = false) {
  const element = document.getElementById(id);
  element.textContent = text;
  element.classList.toggle("error", error);
}

// The head of each table from its data-columns: "|" between columns, "#" before a number's.
for (const table of document.querySelectorAll("table[data-columns]")) {
  const heads = table.dataset.columns.split("|").map((column) => column.trim()).map((column) =>
    column.startsWith("#") ? `<th class="n">${escape(column.slice(1))}</th>` : `<th>${escape(column)}</th>`);
  table.createTHead().innerHTML = `<tr>${heads.join("")}</tr>`;
}

function fill(tableId, rows) {
  document.querySelector(`#${tableId} tbody`).innerHTML = rows.map((r) => `<tr>${r}</tr>`).join("");
}

// datetime-local inputs hold UTC wall time without a zone.
const toInput = (iso) => (iso ? iso.slice(0, 16) : "");
const fromInput = (value) => (value ? `${value}:00Z` : "");

function loadMetrics() {
  const params = new URLSearchParams(location.search);
  return load("metrics-status", "/api/metrics", showMetrics, { start: params.get("start"), end: params.get("end") });
}

async function showMetrics(view) {
  newestEnd = view.newest_window ? new Date(Date.parse(view.newest_window) + 60_000) : null;
  form.start.value = toInput(view.start);
  form.end.value = toInput(view.end);
  document.getElementById("total-orders").textContent = view.orders;
  document.getElementById("total-revenue").textContent = view.revenue;
  document.getElementById("newest-window").textContent = view.newest_window ? utc(view.newest_window) : "none yet";
  status("metrics-status", view.series.length ? "" : `No windows from ${utc(view.start)} to ${utc(view.end)} UTC.`);
  // A minute without orders of a product is a 0 on its line, not a straight line to the next one.
  const minutes = everyMinute(view.start, view.end);
  const revenue = view.series.map((s) => {
    const byMinute = new Map(s.windows.map((w, i) => [utc(w), Number(s.revenue[i])]));
    return { ...s, windows: minutes, revenue: minutes.map((m) => byMinute.get(utc(m)) ?? 0) };
  });
  const xaxis = { type: "date", range: [utc(view.start), utc(view.end)] };  // the range asked for, both charts
  await Promise.all([
    chart("revenue-chart", revenue, (s) => s.revenue, "revenue", "lines", { xaxis }),
    chart("orders-chart", view.series, (s) => s.orders, "orders", undefined, { xaxis, barmode: "stack" }),
  ]);
  fill("windows", view.newest.map((w) => cells([escape(utc(w.window_start)), escape(w.product_name)])
    + number(w.orders) + number(w.revenue) + number(w.average)));
}

function everyMinute(start, end) {
  const minutes = [];
  for (let t = Math.ceil(Date.parse(start) / 60_000) * 60_000; t < Date.parse(end); t += 60_000) {
    minutes.push(new Date(t).toISOString());
  }
  return minutes;
}

function chart(id, series, values, title, mode, layout) {
  const element = document.getElementById(id);
  delete element.dataset.rendered;
  const traces = series.map((s) => ({
    name: s.product_name, x: s.windows.map(utc), y: values(s),
    type: mode ? "scatter" : "bar", mode, line: { width: 1.5 },
  }));
  return Plotly.react(element, traces, {
    margin: { l: 56, r: 12, t: 8, b: 40 }, legend: { orientation: "h", y: -0.18 },
    yaxis: { title: { text: title }, rangemode: "tozero" }, ...layout,
  }, { responsive: true, displaylogo: false }).then(() => { element.dataset.rendered = "true"; });
}

function showRuns(runs) {
  status("runs-status", runs.length ? "" : "No run has been reconciled yet.");
  const last = runs[0];
  document.getElementById("last-run").innerHTML = last
    ? `<span class="${last.reconciled ? "yes" : "no"}">${last.reconciled ? "reconciled" : "NOT reconciled"}</span>`
    : "none yet";
  fill("runs", runs.map((r) => {
    const href = `${UI}/dags/${encodeURIComponent(r.dag_id)}/runs/${encodeURIComponent(r.run_id)}`;
    const reasons = Object.entries(r.invalid_reasons).map(([k, n]) => `${k} ${n}`).join(", ");
    return `<td><a href="${escape(href)}" target="_top">${escape(r.run_id)}</a><br><small>${escape(r.dag_id)}</small></td>`
      + cells([escape(utc(r.reconciled_at))]) + number(r.generated) + number(r.valid) + number(r.invalid)
      + cells([escape(reasons)]) + number(r.late) + number(r.duplicate) + number(r.counted)
      + `<td class="${r.reconciled ? "yes" : "no"}" title="${escape(r.problems.join("\n"))}">`
      + `${r.reconciled ? "yes" : "no"}</td>`;
  }));
}

function showDeadLetters(view) {
  status("dead-letters-status", `Over the ${view.runs} most recent runs.`);
  fill("dead-letter-reasons", Object.entries(view.by_reason).map(([reason, n]) => cells([escape(reason)]) + number(n)));
  fill("dead-letters", view.newest.map((d) => cells([
    escape(utc(d.timestamp)), `<code>${escape(d.key)}</code>`, `<code>${escape(d.value)}</code>`,
    escape(d.reason), escape(d.detail), escape(d.source),
  ])));
}

function showLag(rows) {
  fill("lag", rows.map((r) => cells([escape(r.stage), escape(r.group), escape(r.topic)]) + number(r.records)));
}

function show(start, end) {
  const query = new URLSearchParams({ start, end });
  history.replaceState(null, "", `${location.pathname}?${query}`);
  loadMetrics();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  show(fromInput(form.start.value), fromInput(form.end.value));
});
for (const button of form.querySelectorAll("[data-hours]")) {
  button.addEventListener("click", () => {
    const end = newestEnd ?? new Date();
    const start = new Date(end - Number(button.dataset.hours) * 3_600_000);
    show(start.toISOString(), end.toISOString());
  });
}

loadMetrics();
load("runs-status", "/api/runs", showRuns);
load("dead-letters-status", "/api/dead-letters", showDeadLetters);
load("lag-status", "/api/lag", showLag);
