// Live job page: the series so far come from /series (downsampled to ~2000 points each for long
// jobs); then one EventSource brings newer metric points, events and status, appended to the
// charts. The browser resends Last-Event-ID on reconnect, so the charts get every point once.
(function () {
  "use strict";
  const root = document.getElementById("job");
  if (!root) return;
  const jobId = root.dataset.jobId;
  const chartEl = document.getElementById("chart");
  let loadedPoints = 0;
  let source = null;
  const { MetricStore, ChartBoard } = window.tunedeckCharts;
  const store = new MetricStore();
  const line = (key, label, color, extra) => Object.assign({ key, label, color, store }, extra || {});
  const board = new ChartBoard([
    { el: "chart", height: 320, yLabel: "loss", lines: [
      line("train_loss", "train loss", "#2563eb", { smooth: true }),
      line("valid_loss", "validation loss", "#ea580c", { points: true }),
    ] },
    { el: "chart-accuracy", yLabel: "accuracy", lines: [line("valid_accuracy", "validation accuracy", "#16a34a", { points: true })] },
    { el: "chart-lr", yLabel: "learning rate", lines: [line("learning_rate", "learning rate", "#7c3aed")] },
    { el: "chart-grad", yLabel: "grad norm", lines: [line("grad_norm", "grad norm", "#db2777", { smooth: true })] },
    { el: "chart-tps", yLabel: "tokens/s", lines: [line("tokens_per_second", "tokens/s", "#0891b2", { smooth: true })] },
    { el: "chart-memory", yLabel: "GiB", lines: [line("memory_gib", "peak memory (GiB)", "#4b5563")] },
  ]);
  board.onDraw = () => { chartEl.dataset.points = String(store.seen.size + loadedPoints); };
  board.bindToolbar(document.getElementById("chart-toolbar"));

  function addPoints(points) {
    let changed = false;
    for (const p of points) changed = store.add(p) || changed; // never plot a point twice
    if (changed) board.redraw();
  }

  function addEvents(events) {
    const list = document.getElementById("events");
    const known = new Set(Array.from(list.children).map((li) => li.dataset.id));
    let refreshCheckpoints = false;
    for (const e of events) {
      const id = e.id.replace("ftevent-", "");
      if (known.has(id)) continue;
      const li = document.createElement("li");
      li.className = "event-" + e.level;
      li.dataset.id = id;
      const t = document.createElement("time");
      t.textContent = new Date(e.created_at * 1000).toISOString().slice(11, 19);
      li.append(t, " " + e.message);
      list.append(li);
      if (/checkpoint/i.test(e.message)) refreshCheckpoints = true;
      if (e.type === "alert") showAlert(e);
    }
    list.scrollTop = list.scrollHeight;
    if (refreshCheckpoints && window.htmx) htmx.ajax("GET", `/jobs/${jobId}/checkpoints`, { target: "#checkpoints", swap: "outerHTML" });
  }

  function showAlert(e) {
    const box = document.getElementById("alerts");
    if (box.querySelector(`[data-alert="${e.data.kind}"]`)) return;
    const banner = document.createElement("div");
    banner.className = "banner banner-" + e.data.kind;
    banner.setAttribute("role", "alert");
    banner.dataset.alert = e.data.kind;
    const title = document.createElement("strong");
    const kind = e.data.kind.replace("_", " ");
    title.textContent = kind.charAt(0).toUpperCase() + kind.slice(1);
    const remedies = document.createElement("ol");
    for (const r of e.data.remedies) {
      const item = document.createElement("li");
      item.textContent = r;
      remedies.append(item);
    }
    const lead = document.createElement("div");
    lead.textContent = "Try, in this order:";
    banner.append(title, ` at step ${e.data.step}: ${e.message}`, lead, remedies);
    box.append(banner);
  }

  const fmt = (v, d = 4) => (v === null || v === undefined ? "—" : Number(v).toPrecision(d));

  function setStatus(job) {
    root.dataset.status = job.status;
    const badge = root.querySelector("[data-status-badge]");
    badge.className = "badge badge-" + job.status;
    badge.textContent = job.status.replace("_", " ");
    const pr = job.progress;
    document.getElementById("progress").value = pr.fraction;
    document.getElementById("progress-text").textContent = `step ${pr.step} / ${pr.total_steps ?? "?"}`;
    document.getElementById("eta").textContent = pr.eta ? "ETA " + new Date(pr.eta * 1000).toLocaleTimeString() : "";
    document.getElementById("stat-train").textContent = fmt(job.train_loss);
    document.getElementById("stat-valid").textContent = fmt(job.valid_loss);
    document.getElementById("stat-epoch").textContent = fmt(job.epoch, 3);
    document.getElementById("stat-tokens").textContent = job.trained_tokens ? job.trained_tokens.toLocaleString() : "—";
    const terminal = ["succeeded", "failed", "cancelled"].includes(job.status);
    const cancelForm = document.getElementById("cancel-form");
    const deleteBox = document.getElementById("delete");
    if (cancelForm) cancelForm.hidden = terminal; // absent for people who may only watch this job
    if (deleteBox) deleteBox.hidden = !terminal;
    const priorityForm = document.getElementById("priority-form");
    if (priorityForm && !["queued", "retrying"].includes(job.status)) {
      priorityForm.replaceWith(String(job.priority)); // only a waiting job's priority can change
    }
    if (job.cancel_requested && cancelForm) {
      const button = document.querySelector("#cancel-form button");
      button.disabled = true;
      button.textContent = "Cancelling…";
    }
    document.getElementById("download").hidden = !job.adapter_url;
    const error = document.getElementById("job-error");
    error.hidden = !job.error;
    if (job.error) error.querySelector("[data-error]").textContent = job.error.message;
  }

  function connect(cursor) {
    source = new EventSource(`/api/v1/fine_tuning/jobs/${jobId}/stream?cursor=${cursor}`);
    source.addEventListener("metrics", (m) => addPoints(JSON.parse(m.data)));
    source.addEventListener("events", (m) => addEvents(JSON.parse(m.data)));
    source.addEventListener("status", (m) => setStatus(JSON.parse(m.data)));
    source.addEventListener("end", () => {
      source.close();
      if (window.htmx) {
        htmx.ajax("GET", `/jobs/${jobId}/checkpoints`, { target: "#checkpoints", swap: "outerHTML" });
        htmx.ajax("GET", `/jobs/${jobId}/merge`, { target: "#merge", swap: "outerHTML" });
      }
    });
  }

  // The series so far (downsampled by the server for long jobs), then live points after them.
  async function start() {
    const eventCursor = root.dataset.lastEvent || "0";
    try {
      const response = await fetch(`/api/v1/fine_tuning/jobs/${jobId}/series?max_points=2000`);
      const body = await response.json();
      store.load(body.series);
      loadedPoints = Object.values(body.series).reduce((n, s) => n + s.steps.length, 0);
      board.draw();
      connect(`${body.last_id}-${eventCursor}`);
    } catch (error) {
      console.warn("could not load the series; streaming everything", error);
      connect(`0-${eventCursor}`);
    }
  }

  start();
})();
