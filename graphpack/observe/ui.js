// graphpack ui: draws each deployed graph (SVG from the server) and writes the live figures of
// /api/snapshot into its nodes once a second; a click on a step lists its recent errors.
"use strict";

const REFRESH_MS = 1000;
let selected = null;  // {root, step}
let drawn = "";       // the roots whose graphs are on the page, joined

function rate(value) {
  if (value === null || value === undefined) return "–";
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 0.001) return (value * 1e6).toFixed(0) + "µs";
  if (value < 1) return (value * 1000).toFixed(value < 0.01 ? 2 : 1) + "ms";
  return value.toFixed(2) + "s";
}

function count(value) {
  return value >= 1e6 ? (value / 1e6).toFixed(1) + "M" : value >= 1e4 ? (value / 1e3).toFixed(0) + "k" : String(value);
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

async function getJSON(path) {
  const response = await fetch(path, {cache: "no-store"});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

async function drawGraphs(snapshot) {
  const roots = Object.keys(snapshot.graphs || {}).sort();
  if (roots.join("\n") === drawn) return;
  const box = document.getElementById("graphs");
  box.replaceChildren();
  for (const root of roots) {
    const section = el("div", undefined, "graph");
    section.dataset.root = root;
    const functions = snapshot.graphs[root].functions.join(", ");
    section.append(el("h2", `graph of ${root}`), el("p", `functions: ${functions}`, "note"),
                   el("p", "", "note errors-note"));
    const response = await fetch(`graph.svg?root=${encodeURIComponent(root)}`, {cache: "no-store"});
    const holder = el("div");
    if (response.ok) {
      holder.innerHTML = await response.text();
    } else {
      holder.textContent = (await response.json()).error;
    }
    section.append(holder);
    box.append(section);
    for (const node of section.querySelectorAll('g[id^="step:"]')) {
      node.addEventListener("click", () => select(root, node.id.slice(5)));
    }
  }
  drawn = roots.join("\n");
}

function setLines(node, first, second) {
  const texts = node.querySelectorAll("text");
  if (texts.length >= 3) {
    texts[1].textContent = first;
    texts[2].textContent = second;
  }
}

function mark(node, name, on) {
  node.classList.toggle(name, Boolean(on));
}

function updateGraph(root, graph) {
  const section = document.querySelector(`.graph[data-root="${CSS.escape(root)}"]`);
  if (!section) return;
  section.querySelector(".errors-note").textContent = graph.error_note || "";
  for (const node of section.querySelectorAll('g[id^="step:"]')) {
    const name = node.id.slice(5);
    const queue = graph.queues[name];
    const step = graph.steps[name];
    if (queue) {
      setLines(node, `in ${rate(queue.push_rate)}/s · out ${rate(queue.consume_rate)}/s`,
               `lag ${count(queue.lag_records)} · ${seconds(queue.lag_seconds)}` +
               (queue.dead_lettered ? ` · ${count(queue.dead_lettered)} dead` : ""));
      node.setAttribute("data-pushed", queue.pushed);
      node.setAttribute("data-consumed", queue.consumed);
      node.setAttribute("data-lag", queue.lag_records);
      mark(node, "busy", queue.consume_rate > 0 || queue.push_rate > 0);
      mark(node, "lagging", queue.lag_records > 0 && queue.lag_seconds >= 1);
    } else if (step) {
      setLines(node, `${rate(step.rate)}/s · p99 ${seconds(step.p99)}`,
               `p50 ${seconds(step.p50)} · ${count(step.errors)} err`);
      node.setAttribute("data-events", step.events);
      node.setAttribute("data-errors", step.errors);
      mark(node, "busy", step.rate > 0);
      mark(node, "failing", step.errors_per_s > 0);
    } else {
      setLines(node, "no events yet", "");
    }
  }
}

function updateFunctions(functions) {
  const body = document.querySelector("#functions tbody");
  body.replaceChildren();
  for (const [name, f] of Object.entries(functions)) {
    const row = el("tr");
    row.dataset.function = name;
    const cell = el("td", name, f.up ? "" : "down");
    cell.title = f.up ? f.url : f.error;
    row.append(cell);
    if (f.up) {
      row.append(el("td", rate(f.requests_per_s)), el("td", String(f.in_flight)), el("td", count(f.busy_rejections)));
    } else {
      const reason = el("td", "unreachable", "down");
      reason.colSpan = 3;
      reason.title = f.error;
      row.append(reason);
    }
    body.append(row);
  }
}

async function showErrors() {
  if (!selected) return;
  const list = document.getElementById("errors");
  const hint = document.getElementById("errors-hint");
  document.getElementById("errors-title").textContent = `Recent errors of ${selected.step}`;
  let data;
  try {
    data = await getJSON(`api/errors?root=${encodeURIComponent(selected.root)}&step=${encodeURIComponent(selected.step)}`);
  } catch (error) {
    hint.textContent = String(error.message || error);
    return;
  }
  hint.textContent = data.error_stream
    ? `${count(data.errors)} error(s) counted; ${data.records.length} record(s) in the error stream ${data.error_stream}` +
      (data.note ? ` (${data.note})` : "")
    : `${count(data.errors)} error(s) counted; ${data.note}`;
  list.replaceChildren();
  for (const record of data.records) {
    const item = el("li");
    const when = record.time ? new Date(record.time).toLocaleTimeString() : "";
    const where = record.worker !== undefined && record.worker !== null ? ` worker ${record.worker}` : "";
    item.append(el("span", `${when}${where} `, "when"), el("span", record.error, "error"),
                el("code", JSON.stringify(record.body)));
    list.append(item);
  }
}

function select(root, step) {
  selected = {root, step};
  for (const node of document.querySelectorAll('g[id^="step:"]')) {
    mark(node, "selected", node.id === `step:${step}` && node.closest(".graph").dataset.root === root);
  }
  showErrors();
}

async function tick() {
  const problem = document.getElementById("problem");
  try {
    const snapshot = await getJSON("api/snapshot");
    await drawGraphs(snapshot);
    document.getElementById("where").textContent = `${snapshot.project_dir} · target ${snapshot.target}`;
    for (const [root, graph] of Object.entries(snapshot.graphs || {})) updateGraph(root, graph);
    updateFunctions(snapshot.functions || {});
    const down = Object.entries(snapshot.functions || {}).filter(([, f]) => !f.up).map(([n, f]) => `${n}: ${f.error}`);
    if (snapshot.problem) down.unshift(snapshot.problem);
    problem.hidden = down.length === 0;
    problem.textContent = down.join("\n");
    document.getElementById("updated").textContent = new Date(snapshot.time * 1000).toLocaleTimeString();
    document.body.dataset.updated = String(snapshot.time);
    await showErrors();
  } catch (error) {
    problem.hidden = false;
    problem.textContent = `graphpack ui is not answering: ${error.message || error}`;
  }
}

async function loop() {  // the next refresh a second after this one ends: never two at once
  await tick();
  setTimeout(loop, REFRESH_MS);
}

loop();
