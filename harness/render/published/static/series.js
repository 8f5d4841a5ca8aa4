// A series page: every point with zoom, the detected steps and their commit ranges, and each
// point's records. The series is named by the address's hash: series.html#SERIES_ID.
"use strict";
(function () {
  const id = location.hash.slice(1);
  if (!/^[0-9a-f]{16}$/.test(id)) { TM.fail("No series named in the address (series.html#ID); pick one on the overview."); return; }
  TM.load("series/" + id).then(draw, () => TM.fail(`No series ${id} in this site: it may have been removed by a later publish.`));

  function recordsOf(s, i) {
    const list = document.getElementById("point-records");
    const pts = s.points;
    document.getElementById("point-summary").textContent =
      `Commit ${pts.commit[i]} (${pts.time[i] || "no time"}): ${TM.fmt(pts.value[i], s.unit)}, ` +
      `the median of ${pts.runs[i]} record${pts.runs[i] === 1 ? "" : "s"}.`;
    list.replaceChildren(...s.records[i].map(([shard, rid]) =>
      TM.el("li", {}, TM.el("a", { href: `record.html#${shard}/${rid}`, text: "record " + rid }))));
  }

  function draw(s) {
    document.title = `${s.label} · ${s.metric}`;
    document.getElementById("series-title").textContent = `${s.label} — ${s.metric}`;
    document.getElementById("series-meta").textContent =
      `${s.machine}${s.runner ? ` · runner ${s.runner} alone (its own records; steps the other runners share are on the pooled series)` : ""} · ${s.n} commits · ${s.points.runs.reduce((a, b) => a + b, 0)} records · field ${s.column}` +
      ` · ${s.higher_is_better ? "higher" : "lower"} is better`;
    const pts = s.points;
    const dated = pts.time.every((t) => t);
    const x = dated ? pts.time : pts.value.map((_, i) => i);
    const y = pts.value.map((v) => TM.scale(v, s.unit));
    const hover = pts.commit.map((c, i) => `${TM.esc(TM.short(c))}<br>${TM.esc(TM.day(pts.time[i]))}` +
      `<br>${TM.esc(TM.fmt(pts.value[i], s.unit))} (${pts.runs[i]} run${pts.runs[i] === 1 ? "" : "s"})`);
    const traces = [{ x, y, type: "scatter", mode: "lines+markers", name: TM.esc(s.metric),
      text: hover, hoverinfo: "text", marker: { size: 5 }, line: { width: 1 } }];
    const shapes = [];
    let lo = 0;
    s.steps.forEach((st, j) => {
      const hi = j + 1 < s.steps.length ? s.steps[j + 1].index : pts.value.length;
      const colour = st.verdict === "regression" ? "rgba(214,39,40," : "rgba(44,160,44,";
      // the commits that may be the first changed one, shaded from the last good point
      shapes.push({ type: "rect", xref: "x", yref: "paper", y0: 0, y1: 1,
        x0: x[Math.max(0, st.first - 1)], x1: x[st.last], fillcolor: colour + "0.15)",
        line: { width: 0 }, layer: "below" });
      // the medians on either side
      shapes.push({ type: "line", xref: "x", yref: "y", x0: x[lo], x1: x[st.index - 1],
        y0: TM.scale(st.before, s.unit), y1: TM.scale(st.before, s.unit),
        line: { dash: "dot", color: colour + "0.9)", width: 2 } });
      shapes.push({ type: "line", xref: "x", yref: "y", x0: x[st.index], x1: x[hi - 1],
        y0: TM.scale(st.after, s.unit), y1: TM.scale(st.after, s.unit),
        line: { dash: "dot", color: colour + "0.9)", width: 2 } });
      lo = st.index;
    });
    const annotations = s.steps.map((st) => ({ x: x[st.index], y: 1, yref: "paper", yanchor: "bottom",
      text: TM.esc(TM.pct(st.change)), showarrow: false,
      font: { color: st.verdict === "regression" ? "#d62728" : "#2ca02c" } }));
    const layout = { margin: { t: 30, r: 20, b: 40, l: 70 }, shapes, annotations, hovermode: "closest",
      yaxis: { title: { text: TM.esc(TM.unitLabel(s.unit)) } },
      xaxis: { type: dated ? "date" : "linear", rangeslider: { visible: true },
        title: { text: dated ? "commit time" : "commit (in order)" } } };
    Plotly.newPlot("chart", traces, layout, { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["sendDataToCloud", "lasso2d", "select2d"] }).then((gd) => {
      gd.on("plotly_click", (ev) => { if (ev.points.length) recordsOf(s, ev.points[0].pointIndex); });
      TM.ready();
    });
    recordsOf(s, pts.value.length - 1);

    const p = s.params;
    document.getElementById("method").textContent =
      `Binary segmentation with a two-sided Mann-Whitney U test (p < ${p.alpha} after Bonferroni) ` +
      `and a change of the median beyond ${(100 * p.threshold).toFixed(1)} %; at least ${p.min_segment} ` +
      "commits on each side (trainmark history's method).";
    const tbody = document.querySelector("#steps-table tbody");
    if (!s.steps.length) tbody.appendChild(TM.el("tr", {}, TM.el("td", { colspan: 8, text: "No step in this series." })));
    for (const st of s.steps) {
      tbody.appendChild(TM.el("tr", { class: "step-row" },
        TM.el("td", { class: st.verdict, text: st.verdict }),
        TM.el("td", { class: st.verdict, text: TM.pct(st.change) }),
        TM.el("td", { text: TM.short(st.last_before) }),
        TM.el("td", { text: TM.short(st.first_after) }),
        TM.el("td", { text: st.candidates === 1 ? TM.short(st.first_after)
          : `${TM.short(st.earliest)} .. ${TM.short(st.latest)} (${st.candidates} commits)` }),
        TM.el("td", { class: "num", text: TM.fmt(st.before, s.unit) }),
        TM.el("td", { class: "num", text: TM.fmt(st.after, s.unit) }),
        TM.el("td", { class: "num", text: st.p_adjusted === null ? "—" : st.p_adjusted.toPrecision(2) })));
    }
    const config = document.querySelector("#config-table tbody");
    for (const [k, v] of Object.entries(s.config)) {
      config.appendChild(TM.el("tr", {}, TM.el("th", { text: k }), TM.el("td", { text: v === null ? "—" : String(v) })));
    }
  }
})();
