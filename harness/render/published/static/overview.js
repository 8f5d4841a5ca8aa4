// The overview: every series as a sparkline row, filters, newest regressions first.
"use strict";
(function () {
  const data = TM.data.overview;
  const PAGE = 300; // rows drawn at first; "show more" draws the next ones
  const FILTERS = ["machine", "model", "precision", "optimizer", "metric"];
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#series-table tbody");
  const more = document.getElementById("more");
  let limit = PAGE;

  document.getElementById("summary").textContent =
    `${data.series.length} series from ${data.records} records over ${data.commits} commits ` +
    `(${data.sources} files), built ${data.generated}.`;

  // filter choices, from the data
  for (const key of FILTERS) {
    const select = form.elements[key];
    const values = [...new Set(data.series.map((s) => s[key]).filter((v) => v !== null))];
    values.sort();
    select.appendChild(TM.el("option", { value: "", text: "all" }));
    for (const v of values) select.appendChild(TM.el("option", { value: String(v), text: String(v) }));
  }
  // the filters live in the address, so a filtered view can be shared
  const params = new URLSearchParams(location.hash.slice(1));
  for (const key of [...FILTERS, "q", "runners"]) if (params.get(key)) form.elements[key].value = params.get(key);
  // A machine's series pool its runners; a runner's own series is listed when it alone changed
  // (analysis.history's runner_steps), or when the reader asks for every runner.
  const machineOf = (e) => (e.runner ? `${e.machine} · runner ${e.runner} alone` : e.machine);

  function sparkline(entry) {
    const W = 160, H = 32, values = entry.spark.filter((v) => v !== null);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    svg.setAttribute("class", "spark");
    if (!values.length) return svg;
    // at least 20 % of the middle value tall: 2 % noise stays a ripple, a 10 % step shows
    let lo = Math.min(...values), hi = Math.max(...values);
    const floor = 0.2 * Math.abs((lo + hi) / 2);
    if (hi - lo < floor) { const pad = (floor - (hi - lo)) / 2; lo -= pad; hi += pad; }
    const span = hi - lo || 1;
    const n = entry.spark.length;
    const pts = [];
    entry.spark.forEach((v, i) => {
      if (v === null) return;
      const x = n === 1 ? W / 2 : (i / (n - 1)) * (W - 4) + 2;
      pts.push(`${x.toFixed(1)},${(H - 3 - ((v - lo) / span) * (H - 6)).toFixed(1)}`);
    });
    for (const st of entry.steps) {
      const line = document.createElementNS("http://www.w3.org/2000/svg", "line");
      const x = (st.at * (W - 4) + 2).toFixed(1);
      line.setAttribute("x1", x); line.setAttribute("x2", x);
      line.setAttribute("y1", 0); line.setAttribute("y2", H);
      line.setAttribute("class", st.verdict === "regression" ? "step bad" : "step good");
      svg.appendChild(line);
    }
    const poly = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    poly.setAttribute("points", pts.join(" "));
    svg.appendChild(poly);
    return svg;
  }

  function newestStep(entry) {
    return entry.steps.length ? entry.steps[entry.steps.length - 1] : null;
  }

  function row(entry) {
    const href = "series.html#" + entry.id;
    const st = newestStep(entry);
    const details = Object.entries(entry.details).map(([k, v]) => `${k}=${v}`).join(" ");
    return TM.el("tr", { "data-series": entry.id },
      TM.el("td", {}, TM.el("a", { href, text: entry.label }),
        details ? TM.el("div", { class: "meta", text: details }) : null),
      TM.el("td", { text: machineOf(entry) }),
      TM.el("td", { text: entry.metric }),
      TM.el("td", {}, TM.el("a", { href }, sparkline(entry))),
      TM.el("td", { class: "num", text: TM.fmt(entry.last.value, entry.unit) }),
      TM.el("td", { class: st ? st.verdict : "" },
        st ? `${TM.pct(st.change)} at ${TM.short(st.first_after)} (${TM.day(st.time)})` : "none"));
  }

  function matches(entry, chosen, words) {
    if (entry.runner && !entry.steps.length && form.elements.runners.value !== "all") return false;
    for (const key of FILTERS) {
      if (chosen[key] && String(entry[key]) !== chosen[key]) return false;
    }
    if (!words.length) return true;
    const text = [entry.label, machineOf(entry), entry.metric, entry.dataset,
      ...Object.entries(entry.details).map(([k, v]) => `${k}=${v}`)].join(" ").toLowerCase();
    return words.every((w) => text.includes(w));
  }

  function render() {
    const chosen = {};
    for (const key of FILTERS) chosen[key] = form.elements[key].value;
    const words = form.elements.q.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = data.series.filter((e) => matches(e, chosen, words));
    const frag = document.createDocumentFragment();
    shown.slice(0, limit).forEach((e) => frag.appendChild(row(e)));
    tbody.replaceChildren(frag);
    more.hidden = shown.length <= limit;
    document.getElementById("shown").textContent =
      `${shown.length} of ${data.series.length} series` +
      (shown.length > limit ? `; the first ${limit} drawn` : "");
    const regs = document.querySelector("#regression-table tbody");
    const rfrag = document.createDocumentFragment();
    const steps = [];
    for (const e of shown) for (const st of e.steps) if (st.verdict === "regression") steps.push([e, st]);
    steps.sort((a, b) => (a[1].time < b[1].time ? 1 : a[1].time > b[1].time ? -1 : 0));
    for (const [e, st] of steps.slice(0, 50)) {
      rfrag.appendChild(TM.el("tr", {},
        TM.el("td", { text: `${TM.short(st.first_after)} (${TM.day(st.time)})` }),
        TM.el("td", {}, TM.el("a", { href: "series.html#" + e.id, text: e.label })),
        TM.el("td", { text: machineOf(e) }), TM.el("td", { text: e.metric }),
        TM.el("td", { class: "regression", text: TM.pct(st.change) }),
        TM.el("td", { text: st.candidates === 1 ? TM.short(st.first_after)
          : `${TM.short(st.earliest)} .. ${TM.short(st.latest)} (${st.candidates})` })));
    }
    if (!steps.length) rfrag.appendChild(TM.el("tr", {}, TM.el("td", { colspan: 6, text: "No regression step in the series shown." })));
    regs.replaceChildren(rfrag);
    const p = new URLSearchParams();
    for (const key of [...FILTERS, "q", "runners"]) if (form.elements[key].value) p.set(key, form.elements[key].value);
    history.replaceState(null, "", p.toString() ? "#" + p.toString() : location.pathname);
  }

  for (const kind of ["input", "change"]) form.addEventListener(kind, () => { limit = PAGE; render(); });
  form.addEventListener("submit", (e) => e.preventDefault());
  more.addEventListener("click", () => { limit += PAGE; render(); });
  render();
  TM.ready();
})();
