// pipeline_engine's pages: what the server cannot draw alone. Each part starts from an element
// the page carries (a data- attribute), so a page without it runs none of it. Text from the
// server is only ever set as textContent, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const STATES = ["succeeded", "running", "pending", "waiting", "failed", "upstream_failed", "cancelled"];

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 60) return `${value.toFixed(1)} s`;
  if (value < 3600) return `${Math.floor(value / 60)} min ${String(Math.floor(value % 60)).padStart(2, "0")} s`;
  return `${Math.floor(value / 3600)} h ${String(Math.floor((value % 3600) / 60)).padStart(2, "0")} min`;
}

// a moment as the server prints it (render.when): UTC to the second, the reader's zone on hover
function moment(iso) {
  const at = new Date(iso);
  if (isNaN(at)) return el("span", {}, "");
  const t = el("time", { datetime: iso }, `${at.toISOString().slice(0, 19).replace("T", " ")} UTC`);
  t.title = at.toLocaleString();
  return t;
}

function badge(state) {
  return el("span", { class: `state state-${state}` }, state.replace("_", " "));
}

// --- small things on every page ---------------------------------------------------------------

function shares(root) {
  for (const seg of root.querySelectorAll(".seg[data-share]")) {
    seg.style.width = `${Math.max(0, Math.min(1, Number(seg.dataset.share))) * 100}%`;
  }
}

function localTimes(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const at = new Date(t.getAttribute("datetime"));
    if (!isNaN(at)) t.title = at.toLocaleString();
  }
}

function backLinks() {
  for (const a of document.querySelectorAll("a[data-back]")) {
    a.addEventListener("click", (e) => {
      if (history.length > 1) { e.preventDefault(); history.back(); }
    });
  }
}

// --- the start form: checked in the page before the server checks it again ----------------------

function startForm() {
  const form = document.querySelector("form[data-validate]");
  if (!form) return;
  const problemOf = (input) => document.getElementById(`${input.id}-problem`);
  const check = (input) => {
    const problem = problemOf(input);
    if (!problem) return true;
    const ok = input.checkValidity();
    problem.hidden = ok;
    problem.textContent = ok ? "" : input.validationMessage;
    input.setAttribute("aria-invalid", ok ? "false" : "true");
    input.closest(".field").classList.toggle("invalid", !ok);
    return ok;
  };
  for (const input of form.querySelectorAll("input, select")) {
    if (input.type === "hidden") continue;
    // as the value changes, not on leaving the field: a message that goes away on blur would move
    // the button away from under the pointer that is about to press it
    input.addEventListener(input.tagName === "SELECT" || input.type === "checkbox" ? "change" : "input", () => check(input));
  }
  form.addEventListener("submit", (e) => {
    let first = null;
    for (const input of form.querySelectorAll("input, select")) {
      if (input.type !== "hidden" && !check(input) && !first) first = input;
    }
    if (first) { e.preventDefault(); first.focus(); }
  });
}

// --- the graph, drawn by levels ----------------------------------------------------------------

const COL = 190, ROW = 34, BOX_W = 160, BOX_H = 24;

function dag() {
  const box = document.getElementById("dag");
  if (!box) return;
  const note = document.getElementById("dag-note");
  const base = box.dataset.url;
  let view = null;

  function load(around) {
    const url = new URL(base, location.href);
    if (around) url.searchParams.set("around", around);
    fetch(url, { credentials: "same-origin" }).then((r) => r.json().then((data) => ({ ok: r.ok, data })))
      .then(({ ok, data }) => {
        if (!ok) { note.textContent = data.error ? data.error.message : "the graph could not be read"; return; }
        draw(data);
      });
  }

  function draw(data) {
    box.replaceChildren();
    const svg = el("svg:svg", { role: "img" });
    const g = el("svg:g");
    svg.appendChild(g);
    box.appendChild(svg);
    const critical = new Set(data.critical);
    let width = 400, height = 200;
    if (data.vertices.length) {
      const at = new Map();
      for (const v of data.vertices) at.set(v.name, [v.level * COL + 10, v.row * ROW + 10]);
      for (const [t, h] of data.edges) {
        const a = at.get(t), b = at.get(h);
        if (!a || !b) continue;
        const x1 = a[0] + BOX_W, y1 = a[1] + BOX_H / 2, x2 = b[0], y2 = b[1] + BOX_H / 2, mx = (x1 + x2) / 2;
        const onPath = critical.has(t) && critical.has(h);
        g.appendChild(el("svg:path", { class: onPath ? "e critical" : "e", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
      }
      for (const v of data.vertices) {
        const [x, y] = at.get(v.name);
        const classes = ["v", `state-${v.state}`];
        if (critical.has(v.name)) classes.push("critical");
        if (v.name === data.around) classes.push("focus");
        const node = el("svg:g", { class: classes.join(" "), transform: `translate(${x},${y})`, "data-vertex": v.name });
        node.appendChild(el("svg:title", {}, `${v.name}: ${v.state}`));
        node.appendChild(el("svg:rect", { width: BOX_W, height: BOX_H, rx: 5 }));
        const label = v.name.length > 24 ? `${v.name.slice(0, 23)}…` : v.name;
        node.appendChild(el("svg:text", { x: 8, y: 16 }, label));
        node.addEventListener("click", () => { if (!moved) load(v.name); });
        g.appendChild(node);
        width = Math.max(width, x + BOX_W + 20);
        height = Math.max(height, y + BOX_H + 20);
      }
      note.textContent = data.around
        ? `the neighbourhood of ${data.around}: ${data.vertices.length} of ${data.total} vertices` +
          (data.left_out ? ` (${data.left_out} more left out)` : "") + "; click a vertex to centre on it"
        : `${data.total} vertices; click one to draw its neighbourhood`;
    } else {
      // too many vertices to draw one by one: a box per level, its vertices counted by state
      const most = Math.max(1, ...data.levels.map((l) => l.vertices));
      data.levels.forEach((l, i) => {
        const x = i * 70 + 10, h = Math.max(16, (l.vertices / most) * 360);
        const node = el("svg:g", { class: "lvl", transform: `translate(${x},10)` });
        node.appendChild(el("svg:title", {}, `level ${l.level}: ${l.vertices} vertices` +
          Object.entries(l.counts).map(([s, n]) => `, ${s} ${n}`).join("")));
        node.appendChild(el("svg:rect", { class: "frame", width: 50, height: h }));
        let y = 0;
        for (const s of [...STATES, "none"]) {
          const n = l.counts[s] || 0;
          if (!n) continue;
          const part = (n / l.vertices) * h;
          const seg = el("svg:rect", { width: 50, height: part, y, class: `seg-${s}` });
          seg.style.fill = getComputedStyle(document.documentElement).getPropertyValue(`--${s}`);
          node.appendChild(seg);
          y += part;
        }
        node.appendChild(el("svg:text", { x: 0, y: h + 14 }, `L${l.level}`));
        node.appendChild(el("svg:text", { x: 0, y: h + 27 }, String(l.vertices)));
        g.appendChild(node);
        width = Math.max(width, x + 70);
        height = Math.max(height, h + 50);
      });
      note.textContent = `${data.total} vertices in ${data.levels.length} levels: too many to draw one by one, so` +
        " each level is a bar of its vertices by state. Find a vertex to draw its neighbourhood.";
    }
    // at most life size; the box as tall as the drawing needs, within bounds
    const scale = Math.min(1, box.clientWidth / width);
    box.style.height = `${Math.round(Math.max(160, Math.min(520, height * scale)))}px`;
    view = { x: 0, y: 0, w: width, h: height };
    const aspect = box.clientWidth / box.clientHeight;
    if (view.w / view.h < aspect) view.w = view.h * aspect; else view.h = view.w / aspect;
    apply();
    panZoom(svg);
  }

  function apply() {
    box.firstChild.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
  }

  let moved = false;
  function panZoom(svg) {
    let start = null;
    svg.addEventListener("pointerdown", (e) => { start = [e.clientX, e.clientY, view.x, view.y]; moved = false; svg.classList.add("dragging"); });
    window.addEventListener("pointerup", () => { start = null; svg.classList.remove("dragging"); });
    svg.addEventListener("pointermove", (e) => {
      if (!start) return;
      const k = view.w / box.clientWidth;
      const dx = e.clientX - start[0], dy = e.clientY - start[1];
      if (Math.abs(dx) + Math.abs(dy) > 3) moved = true;
      view.x = start[2] - dx * k; view.y = start[3] - dy * k;
      apply();
    });
    svg.addEventListener("wheel", (e) => {
      e.preventDefault();
      const f = e.deltaY > 0 ? 1.15 : 1 / 1.15;
      const r = box.getBoundingClientRect();
      const px = view.x + ((e.clientX - r.left) / r.width) * view.w, py = view.y + ((e.clientY - r.top) / r.height) * view.h;
      view.w *= f; view.h *= f;
      view.x = px - ((e.clientX - r.left) / r.width) * view.w; view.y = py - ((e.clientY - r.top) / r.height) * view.h;
      apply();
    }, { passive: false });
  }

  const search = document.querySelector("form.dag-search");
  if (search) search.addEventListener("submit", (e) => {
    e.preventDefault();
    const name = search.elements.around.value.trim();
    if (name) load(name);
  });
  const whole = document.querySelector("[data-dag-whole]");
  if (whole) whole.addEventListener("click", () => load(null));
  load(null);
}

// --- the run: its timeline and its live state ----------------------------------------------------

function timeline() {
  const box = document.getElementById("timeline");
  if (!box) return null;
  const canvas = el("canvas");
  const tip = el("div", { class: "tip" });
  tip.hidden = true;
  let data = null, rows = [], span = 1;
  const colours = {};
  const css = getComputedStyle(document.documentElement);
  for (const s of [...STATES, "timed_out", "lost"]) colours[s] = css.getPropertyValue(`--${s}`).trim();

  function paint() {
    if (!data) return;
    box.dataset.drawn = "yes";
    if (!data.bars.length) { box.replaceChildren(el("p", { class: "sub" }, "no attempt has started yet")); return; }
    if (!canvas.isConnected) box.replaceChildren(canvas, tip);
    rows = data.bars.slice().sort((a, b) => a[2] - b[2]);
    span = Math.max(0.001, data.now, ...rows.map((b) => (b[3] === null ? data.now : b[3])));
    const ratio = window.devicePixelRatio || 1;
    const width = box.clientWidth, rowH = rows.length > 150 ? Math.max(1, 300 / rows.length) : 14;
    const height = Math.min(Math.max(rows.length * rowH + 24, 60), 340);
    canvas.width = width * ratio; canvas.height = height * ratio; canvas.style.height = `${height}px`;
    const c = canvas.getContext("2d");
    c.scale(ratio, ratio);
    c.clearRect(0, 0, width, height);
    const left = 4, right = width - 8, top = 4, usable = right - left;
    const h = Math.max(1, Math.min(rowH, (height - 24) / rows.length));
    rows.forEach((b, i) => {
      const end = b[3] === null ? data.now : b[3];
      const x = left + (b[2] / span) * usable, w = Math.max(1, ((end - b[2]) / span) * usable);
      c.fillStyle = colours[b[4]] || "#999";
      c.fillRect(x, top + i * h, w, Math.max(1, h - (h > 4 ? 2 : 0)));
      if (b[1] > 1 && h >= 8) { c.fillStyle = "#fff"; c.font = "10px sans-serif"; c.fillText(`#${b[1]}`, x + 2, top + i * h + h - 4); }
    });
    c.fillStyle = "#5b6675"; c.font = "10px sans-serif";
    for (let k = 0; k <= 4; k++) {
      const x = left + (k / 4) * usable;
      c.fillText(seconds((k / 4) * span), Math.min(x, right - 40), height - 6);
    }
  }

  canvas.addEventListener("mousemove", (e) => {
    if (!rows.length) return;
    const r = canvas.getBoundingClientRect();
    const h = Math.max(1, Math.min(rows.length > 150 ? Math.max(1, 300 / rows.length) : 14, (r.height - 24) / rows.length));
    const i = Math.floor((e.clientY - r.top - 4) / h);
    const b = rows[i];
    if (!b) { tip.hidden = true; return; }
    const end = b[3] === null ? data.now : b[3];
    tip.textContent = `${b[0]} · attempt ${b[1]} · ${b[4].replace("_", " ")} · ${seconds(end - b[2])}`;
    tip.hidden = false;
    tip.style.left = `${Math.min(e.clientX - r.left + 12, r.width - 260)}px`;
    tip.style.top = `${e.clientY - r.top + 12}px`;
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  window.addEventListener("resize", paint);

  function refresh() {
    return fetch(box.dataset.url, { credentials: "same-origin" }).then((r) => (r.ok ? r.json() : null))
      .then((d) => { if (d) { data = d; paint(); } });
  }
  refresh();
  return refresh;
}

function liveRun(refreshTimeline) {
  const run = document.getElementById("run");
  if (!run || !window.EventSource) return;
  const ended = ["succeeded", "failed", "cancelled"];
  if (ended.includes(run.dataset.state)) return;
  const source = new EventSource(run.dataset.events);
  let due = null;
  const later = () => { if (refreshTimeline && !due) due = setTimeout(() => { due = null; refreshTimeline(); }, 1000); };

  source.addEventListener("run", (e) => {
    const d = JSON.parse(e.data);
    run.dataset.state = d.state;
    document.getElementById("run-state").replaceChildren(badge(d.state));
    const total = Object.values(d.counts).reduce((a, b) => a + b, 0);
    for (const s of STATES) {
      const cell = document.querySelector(`[data-count="${s}"]`);
      if (cell) cell.textContent = d.counts[s] || 0;
    }
    const bar = document.querySelector("#counts .bar");
    if (bar) {
      bar.replaceChildren(...STATES.filter((s) => d.counts[s]).map((s) => {
        const seg = el("span", { class: `seg state-${s}`, "data-share": d.counts[s] / total, title: `${s}: ${d.counts[s]}` });
        return seg;
      }));
      shares(bar);
    }
    if (ended.includes(d.state)) {
      source.close();
      for (const b of document.querySelectorAll("form[action$='/cancel']")) b.remove();
      const eta = document.getElementById("eta");
      if (eta) eta.remove();
      const end = document.getElementById("run-finished");
      if (end && d.finished_at) {
        const took = d.started_at ? ` · took ${seconds((new Date(d.finished_at) - new Date(d.started_at)) / 1000)}` : "";
        end.replaceChildren(" · finished ", moment(d.finished_at), took);
      }
      if (refreshTimeline) refreshTimeline();
    }
  });
  source.addEventListener("track", (e) => {
    const t = JSON.parse(e.data);
    for (const row of document.querySelectorAll(`tr[data-vertex="${CSS.escape(t.vertex)}"]`)) {
      const cell = (c) => row.querySelector(c);
      if (cell(".track-state")) cell(".track-state").replaceChildren(badge(t.state));
      if (cell(".track-attempt")) cell(".track-attempt").textContent = t.attempt || "";
      if (cell(".track-started")) cell(".track-started").replaceChildren(...(t.started_at ? [moment(t.started_at)] : []));
      if (cell(".track-worker")) cell(".track-worker").textContent = t.worker || "";
      if (cell(".track-exit")) cell(".track-exit").textContent = t.exit_code === null ? "" : t.exit_code;
      if (cell(".track-error")) cell(".track-error").textContent = t.error || "";
      if (cell(".track-took")) cell(".track-took").textContent = t.finished_at && t.started_at
        ? seconds((new Date(t.finished_at) - new Date(t.started_at)) / 1000) : "";
      if (cell(".why") && !["waiting", "pending"].includes(t.state)) row.remove();  // it runs, or has ended
    }
    const reasons = document.getElementById("reasons");
    if (reasons && !reasons.querySelector("tbody tr")) reasons.closest("section").remove();
    later();
  });
}

function liveRuns() {
  const table = document.querySelector("table[data-live]");
  if (!table || !window.EventSource) return;
  const source = new EventSource(table.dataset.live);
  source.addEventListener("run", (e) => {
    const d = JSON.parse(e.data);
    const row = table.querySelector(`tr[data-run="${d.id}"]`);
    if (!row) return;
    row.querySelector(".run-state").replaceChildren(badge(d.state));
    const total = Object.values(d.counts).reduce((a, b) => a + b, 0);
    const bar = row.querySelector(".run-counts .bar");
    if (bar) {
      bar.replaceChildren(...STATES.filter((s) => d.counts[s]).map((s) =>
        el("span", { class: `seg state-${s}`, "data-share": d.counts[s] / total, title: `${s}: ${d.counts[s]}` })));
      shares(bar);
    }
    const sub = row.querySelector(".run-counts .sub");
    if (sub) sub.textContent = `${d.counts.succeeded || 0}/${total}`;
  });
}

// --- a vertex's log, followed while its attempt runs ---------------------------------------------

function followLog() {
  const pre = document.getElementById("log");
  if (!pre || pre.dataset.follow !== "yes" || !window.ReadableStream) return;
  const status = document.getElementById("log-status");
  const url = new URL(pre.dataset.url, location.href);
  url.searchParams.set("follow", "true");
  url.searchParams.set("offset", pre.dataset.offset || "0");
  const decoder = new TextDecoder();
  fetch(url, { credentials: "same-origin" }).then((r) => {
    if (!r.ok || !r.body) { status.textContent = "the log cannot be followed: reload the page"; return; }
    const reader = r.body.getReader();
    const pump = () => reader.read().then(({ done, value }) => {
      if (done) {
        status.textContent = "the track has ended";
        // its final state, from the page as the server draws it now
        return fetch(location.href, { credentials: "same-origin" }).then((p) => p.text()).then((html) => {
          const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("track-state");
          const shown = document.getElementById("track-state");
          if (fresh && shown) shown.replaceChildren(...Array.from(fresh.childNodes, (n) => document.importNode(n, true)));
        });
      }
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(decoder.decode(value, { stream: true }));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      return pump();
    });
    return pump();
  }).catch(() => { status.textContent = "the log's connection was lost: reload the page"; });
}

document.addEventListener("DOMContentLoaded", () => {
  shares(document);
  localTimes(document);
  backLinks();
  startForm();
  dag();
  liveRun(timeline());
  liveRuns();
  followLog();
});
