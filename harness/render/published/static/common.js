// trainmark site: shared helpers. Every string from a results file goes into the page as text
// (textContent), never as markup; data arrive as scripts that call TM.put (file:// pages
// cannot fetch JSON).
"use strict";
window.TM = {
  data: {},
  waiting: {},
  put(name, value) {
    this.data[name] = value;
    (this.waiting[name] || []).forEach((resolve) => resolve(value));
    delete this.waiting[name];
  },
  // Load data/NAME.js once; resolves with what it put. NAME is checked against a strict
  // pattern, so an address's hash cannot point the page at another script.
  load(name) {
    if (!/^[a-z]+\/[0-9a-f]{1,64}$|^[a-z]+$/.test(name)) {
      return Promise.reject(new Error("not a data name: " + name));
    }
    if (name in this.data) return Promise.resolve(this.data[name]);
    return new Promise((resolve, reject) => {
      (this.waiting[name] = this.waiting[name] || []).push(resolve);
      const s = document.createElement("script");
      s.src = "data/" + name + ".js";
      s.onerror = () => reject(new Error("no data file data/" + name + ".js"));
      document.head.appendChild(s);
    });
  },
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  },
  // Plotly draws some tags in labels (<b>, <br>, <a>): escape strings handed to it.
  esc(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  },
  short(commit) { return commit ? String(commit).slice(0, 12) : "—"; },
  // A value in its unit: bytes as MiB, fractions as per cent, throughput with 4 digits.
  fmt(value, unit) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    if (unit === "bytes") return (value / 1048576).toPrecision(4) + " MiB";
    if (unit === "fraction") return (100 * value).toFixed(2) + " %";
    return Number(value).toPrecision(4) + (unit ? " " + unit : "");
  },
  scale(value, unit) { return unit === "bytes" ? value / 1048576 : value; },
  unitLabel(unit) { return unit === "bytes" ? "MiB" : unit; },
  pct(change) {
    if (change === null || change === undefined) return "—";
    return (change > 0 ? "+" : "") + (100 * change).toFixed(1) + " %";
  },
  day(time) { return time ? String(time).slice(0, 10) : ""; },
  // The page is drawn: tests wait for data-ready, benchmarks/publish_scale.py reads readyAt
  // (milliseconds from navigation).
  ready() {
    this.readyAt = performance.now();
    document.body.dataset.ready = "1";
  },
  fail(message) {
    const box = document.getElementById("missing");
    if (box) { box.hidden = false; box.textContent = message; }
  },
};
