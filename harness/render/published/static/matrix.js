// The hardware matrix: every machine's latest point per config, relative to a reference.
"use strict";
(function () {
  const data = TM.data.matrix;
  const form = document.getElementById("matrix-controls");
  const params = new URLSearchParams(location.hash.slice(1));
  const option = (v, text) => TM.el("option", { value: v, text: text === undefined ? v : text });
  for (const m of data.machines) form.elements.reference.appendChild(option(m));
  const known = ["throughput", "memory", "accuracy"];
  const metrics = [...new Set(data.rows.map((r) => r.metric))]
    .sort((a, b) => (known.indexOf(a) + 99 * !known.includes(a)) - (known.indexOf(b) + 99 * !known.includes(b)));
  for (const m of metrics) form.elements.metric.appendChild(option(m));
  form.elements.model.appendChild(option("", "all"));
  for (const m of [...new Set(data.rows.map((r) => r.model))].sort()) form.elements.model.appendChild(option(m));
  for (const k of ["reference", "metric", "model"]) if (params.get(k)) form.elements[k].value = params.get(k);
  if (!form.elements.reference.value) form.elements.reference.value = data.reference;

  const info = document.querySelector("#machines-table tbody");
  for (const m of data.machines) {
    const i = data.info[m];
    info.appendChild(TM.el("tr", {}, TM.el("td", { text: m }), TM.el("td", { text: i.device_name || "—" }),
      TM.el("td", { text: i.hosts.join(", ") }),
      TM.el("td", { text: `${TM.short(i.latest_commit)} (${TM.day(i.latest_time)})` }),
      TM.el("td", { class: "num", text: i.usd_per_hour ? i.usd_per_hour.toFixed(2) : "—" })));
  }

  function render() {
    const ref = form.elements.reference.value, metric = form.elements.metric.value,
      model = form.elements.model.value;
    const order = [ref, ...data.machines.filter((m) => m !== ref)];
    const rows = data.rows.filter((r) => r.metric === metric && (!model || r.model === model));
    const priced = metric === "throughput" && order.some((m) => data.info[m].usd_per_hour);
    const head = TM.el("tr", {}, ...["model", "dataset", "batch", "precision", "optimizer", "other"].map((h) => TM.el("th", { text: h })),
      ...order.map((m) => TM.el("th", { text: m === ref ? m + " (reference)" : m })));
    document.querySelector("#matrix-table thead").replaceChildren(head);
    const body = rows.map((r) => {
      const base = r.cells[ref];
      const cells = order.map((m) => {
        const c = r.cells[m];
        if (!c) return TM.el("td", { class: "missing", text: "not run" });
        const stale = c.commit !== data.info[m].latest_commit;
        let text = TM.fmt(c.value, r.unit);
        let cls = "num";
        if (m !== ref && base && base.value && c.value) {
          const ratio = c.value / base.value;
          text += ` (${ratio.toFixed(2)}×)`;
          const better = r.higher_is_better ? ratio > 1 : ratio < 1;
          cls += Math.abs(ratio - 1) < 0.02 ? "" : better ? " better" : " worse";
        }
        if (priced && c.usd_per_million !== undefined) {
          text += ` · $${c.usd_per_million.toPrecision(3)}/1M`;
          if (m !== ref && base && base.usd_per_million) text += ` (${(c.usd_per_million / base.usd_per_million).toFixed(2)}× cost)`;
        }
        return TM.el("td", { class: cls, title: `commit ${c.commit} (${c.time})` },
          TM.el("a", { href: "series.html#" + c.series, text }), stale ? "†" : null);
      });
      return TM.el("tr", {}, ...[r.model, r.dataset, r.batch_size, r.precision, r.optimizer, r.details]
        .map((v) => TM.el("td", { text: v === null || v === undefined || v === "" ? "—" : String(v) })), ...cells);
    });
    if (!body.length) body.push(TM.el("tr", {}, TM.el("td", { colspan: 6 + order.length, text: "No config for this choice." })));
    document.querySelector("#matrix-table tbody").replaceChildren(...body);
    const p = new URLSearchParams({ reference: ref, metric });
    if (model) p.set("model", model);
    history.replaceState(null, "", "#" + p.toString());
  }
  form.addEventListener("change", render);
  render();
  TM.ready();
})();
