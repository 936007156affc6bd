// Compare page: each job's series (downsampled by the server) overlaid, one colour per job.
(function () {
  "use strict";
  const root = document.getElementById("compare");
  if (!root) return;
  const ids = root.dataset.jobs.split(",");
  const colors = ["#2563eb", "#ea580c", "#16a34a", "#7c3aed", "#db2777", "#0891b2"];
  const { MetricStore, ChartBoard } = window.tunedeckCharts;
  const stores = ids.map(() => new MetricStore());
  const labels = (root.dataset.labels || "").split(",");
  const label = (id) => labels[ids.indexOf(id)] || id.slice(-8);
  const board = new ChartBoard([
    { el: "compare-train", height: 300, yLabel: "train loss",
      lines: ids.map((id, i) => ({ key: "train_loss", label: label(id), color: colors[i], smooth: true, store: stores[i] })) },
    { el: "compare-valid", height: 300, yLabel: "validation loss",
      lines: ids.map((id, i) => ({ key: "valid_loss", label: label(id), color: colors[i], points: true, store: stores[i] })) },
  ], { syncKey: "compare" });
  board.bindToolbar(document.getElementById("compare-toolbar"));
  board.onDraw = (points) => { document.getElementById("compare-train").dataset.points = String(points); };

  const onlyDiff = document.getElementById("only-diff");
  const table = document.querySelector("[data-only-diff]");
  const apply = () => table.querySelectorAll("tr.same").forEach((tr) => { tr.hidden = onlyDiff.checked; });
  onlyDiff.addEventListener("change", apply);
  apply();

  Promise.all(ids.map((id) => fetch(`/api/v1/fine_tuning/jobs/${id}/series?max_points=2000&keys=train_loss&keys=valid_loss`).then((r) => r.json())))
    .then((bodies) => {
      bodies.forEach((body, i) => stores[i].load(body.series));
      board.draw();
    });
})();
