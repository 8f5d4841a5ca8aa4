// A record page: record.html#SHARD/RECORD_ID. Config, provenance, code identity, results and
// the loss curve of one stored record, read from its results file's shard.
"use strict";
(function () {
  const m = /^#([0-9a-f]{16})\/(.+)$/.exec(location.hash);
  if (!m) { TM.fail("No record named in the address (record.html#SHARD/RECORD_ID)."); return; }
  const shard = m[1], rid = decodeURIComponent(m[2]);
  TM.load("records/" + shard).then((data) => {
    const rec = data.records.find((r) => r && String(r.record_id) === rid);
    if (!rec) { TM.fail(`No record ${rid} in ${data.source}.`); return; }
    draw(rec, data.source);
  }, () => TM.fail(`No records file ${shard} in this site: it may have been removed by a later publish.`));

  function value(v) {
    if (v === null || v === undefined) return "—";
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  }

  function draw(rec, source) {
    document.title = `record ${rid}`;
    document.getElementById("record-title").textContent =
      `Record ${rid}: ${[rec.model, rec.dataset, rec.batch_size && "bs" + rec.batch_size, rec.precision, rec.optimizer, rec.device].filter(Boolean).join(" ")}`;
    document.getElementById("record-meta").textContent =
      `status ${value(rec.status)} · ${value(rec.timestamp)} · from ${source}`;
    const groups = TM.data.fields.groups;
    const seen = new Set(TM.data.fields.hidden);
    const box = document.getElementById("record-sections");
    const add = (title, keys) => {
      const rows = keys.filter((k) => k in rec && !seen.has(k));
      rows.forEach((k) => seen.add(k));
      if (!rows.length) return;
      box.appendChild(TM.el("section", { class: "fields" }, TM.el("h2", { text: title }),
        TM.el("table", {}, TM.el("tbody", {}, ...rows.map((k) =>
          TM.el("tr", {}, TM.el("th", { text: k }), TM.el("td", { text: value(rec[k]) })))))));
    };
    for (const [title, keys] of groups) add(title, keys);
    add("Other fields", Object.keys(rec));

    const curve = Array.isArray(rec.loss_curve) ? rec.loss_curve : [];
    const note = document.getElementById("loss-note");
    if (!curve.length) {
      note.textContent = "This record has no loss curve.";
      document.getElementById("loss-chart").hidden = true;
      TM.ready();
      return;
    }
    const every = Number(rec.loss_curve_every) || 1;
    const steps = curve.map((_, i) => Math.min((i + 1) * every, curve.length * every));
    note.textContent = `${curve.length} points` + (every > 1 ? `, each the mean of ${every} steps` : ", one per step") +
      (rec.loss_curve_sha256 ? `; sha256 of every step's loss ${rec.loss_curve_sha256}` : "");
    Plotly.newPlot("loss-chart", [{ x: steps, y: curve, type: "scatter", mode: "lines", name: "train loss" }],
      { margin: { t: 10, r: 20, b: 40, l: 60 }, xaxis: { title: { text: "step" } }, yaxis: { title: { text: "training loss" } } },
      { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["sendDataToCloud", "lasso2d", "select2d"] }).then(() => { TM.ready(); });
  }
})();
