// Live job page: one EventSource brings metric points, events and status; the browser
// resends Last-Event-ID on reconnect, so the chart gets every point once.
(function () {
  "use strict";
  const root = document.getElementById("job");
  if (!root) return;
  const jobId = root.dataset.jobId;
  const steps = new Map(); // step -> {train, valid}
  const seenPoints = new Set();
  const chartEl = document.getElementById("chart");
  let plot = null;
  let source = null;

  function chartData() {
    const xs = Array.from(steps.keys()).sort((a, b) => a - b);
    return [xs, xs.map((s) => steps.get(s).train ?? null), xs.map((s) => steps.get(s).valid ?? null)];
  }

  function makePlot() {
    const opts = {
      width: Math.max(320, chartEl.clientWidth - 8),
      height: 320,
      scales: { x: { time: false } },
      axes: [{ label: "step", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] }, { label: "loss" }],
      series: [
        { label: "step" },
        { label: "train loss", stroke: "#2563eb", width: 2, spanGaps: true, points: { show: false } },
        { label: "validation loss", stroke: "#ea580c", width: 2, spanGaps: true, points: { show: true, size: 6 } },
      ],
    };
    plot = new uPlot(opts, chartData(), chartEl);
    window.addEventListener("resize", () => plot.setSize({ width: Math.max(320, chartEl.clientWidth - 8), height: 320 }));
  }

  function addPoints(points) {
    let changed = false;
    for (const p of points) {
      if (seenPoints.has(p.id)) continue; // never plot a point twice
      seenPoints.add(p.id);
      if (p.k !== "train_loss" && p.k !== "valid_loss") continue;
      const row = steps.get(p.s) || {};
      row[p.k === "train_loss" ? "train" : "valid"] = p.v;
      steps.set(p.s, row);
      changed = true;
    }
    if (!changed) return;
    if (!plot) makePlot();
    else plot.setData(chartData());
    chartEl.dataset.points = String(seenPoints.size);
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
    document.getElementById("cancel-form").hidden = terminal;
    if (job.cancel_requested) {
      const button = document.querySelector("#cancel-form button");
      button.disabled = true;
      button.textContent = "Cancelling…";
    }
    document.getElementById("download").hidden = !job.adapter_url;
    const error = document.getElementById("job-error");
    error.hidden = !job.error;
    if (job.error) error.querySelector("[data-error]").textContent = job.error.message;
  }

  function connect() {
    source = new EventSource(`/api/v1/fine_tuning/jobs/${jobId}/stream`);
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

  connect();
})();
