// Metric charts shared by the job page and the compare page (uPlot). A MetricStore holds each
// series in step order; charts are rebuilt from it on the next animation frame after a change.
(function () {
  "use strict";

  // Debiased exponential moving average, as TensorBoard's smoothing slider does.
  function smooth(values, weight) {
    if (!weight) return values.slice();
    const out = new Array(values.length);
    let last = 0, debias = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v === null || v === undefined || !Number.isFinite(v)) { out[i] = v; continue; }
      last = last * weight + (1 - weight) * v;
      debias = debias * weight + (1 - weight);
      out[i] = last / debias;
    }
    return out;
  }

  class MetricStore {
    constructor() { this.series = new Map(); this.seen = new Set(); }
    get(key) {
      if (!this.series.has(key)) this.series.set(key, { s: [], e: [], v: [] });
      return this.series.get(key);
    }
    load(all) { // the /series response: {key: {steps, epochs, values}}
      for (const [key, s] of Object.entries(all)) this.series.set(key, { s: s.steps.slice(), e: s.epochs.slice(), v: s.values.slice() });
    }
    add(p) { // one streamed point {id, k, s, e, v}; returns false for a point already seen
      if (this.seen.has(p.id)) return false;
      this.seen.add(p.id);
      const one = this.get(p.k);
      const n = one.s.length;
      if (n && p.s <= one.s[n - 1]) { // a resumed attempt rewrites the steps after its checkpoint
        let cut = n;
        while (cut > 0 && one.s[cut - 1] >= p.s) cut--;
        one.s.length = one.e.length = one.v.length = cut;
      }
      one.s.push(p.s); one.e.push(p.e); one.v.push(p.v);
      return true;
    }
    has(key) { return this.series.has(key) && this.series.get(key).s.length > 0; }
  }

  // Align several series on one x axis (step or epoch): [xs, ys1, ys2, ...] with nulls for gaps.
  function align(seriesList, axis) {
    const xs = new Set();
    const maps = seriesList.map((one) => {
      const m = new Map();
      if (!one) return m;
      for (let i = 0; i < one.s.length; i++) {
        const x = axis === "epoch" ? one.e[i] : one.s[i];
        if (x === null || x === undefined) continue;
        m.set(x, one.v[i]);
        xs.add(x);
      }
      return m;
    });
    const sorted = Array.from(xs).sort((a, b) => a - b);
    return [sorted, ...maps.map((m) => sorted.map((x) => (m.has(x) ? m.get(x) : null)))];
  }

  // Axis labels with as many decimals as the tick spacing needs (10.785, 10.790, … not 10.79 ×3).
  function tick(v, spacing) {
    if (v === null || v === undefined) return "";
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(1);
    const decimals = spacing > 0 ? Math.max(0, Math.min(8, -Math.floor(Math.log10(spacing)))) : 2;
    return v.toFixed(decimals);
  }

  function fade(color) { return color + "55"; }

  // One chart: spec = {el, title, lines: [{key, label, color, smooth, points, store}], height}
  class MetricChart {
    constructor(spec, options) {
      this.spec = spec; this.options = options; this.plot = null; this.axis = null; this.weight = null;
    }
    lines() { return this.spec.lines.filter((l) => l.store.has(l.key)); }
    data(lines) {
      const aligned = align(lines.map((l) => l.store.get(l.key)), this.options.axis);
      const out = [aligned[0]];
      lines.forEach((l, i) => {
        if (l.smooth) out.push(aligned[i + 1], smooth(aligned[i + 1], this.options.smoothing));
        else out.push(aligned[i + 1]);
      });
      return out;
    }
    series(lines) {
      const out = [{ label: this.options.axis }];
      for (const l of lines) {
        if (l.smooth) {
          out.push({ label: l.label + " (raw)", stroke: fade(l.color), width: 1, spanGaps: true, points: { show: false } });
          out.push({ label: l.label, stroke: l.color, width: 2, spanGaps: true, points: { show: false } });
        } else {
          out.push({ label: l.label, stroke: l.color, width: 2, spanGaps: true, points: { show: !!l.points, size: 6 } });
        }
      }
      return out;
    }
    render() {
      const el = document.getElementById(this.spec.el);
      if (!el) return 0;
      const lines = this.lines();
      const box = el.closest("[data-chart-box]") || el;
      box.hidden = lines.length === 0;
      if (!lines.length) return 0;
      const data = this.data(lines);
      const shape = lines.map((l) => l.key + l.label).join("|");
      if (this.plot && this.axis === this.options.axis && this.shape === shape) {
        this.plot.setData(data, !this.zoomed());
      } else {
        if (this.plot) this.plot.destroy();
        this.axis = this.options.axis; this.shape = shape;
        this.plot = new uPlot({
          width: this.width(el),
          height: this.spec.height || 200,
          scales: { x: { time: false } },
          cursor: { sync: { key: this.options.syncKey || "metrics" }, drag: { x: true, y: false } },
          legend: { live: true },
          axes: [{ label: this.options.axis }, { label: this.spec.yLabel || "", size: 64, values: (u, vals) => vals.map((v) => tick(v, vals.length > 1 ? Math.abs(vals[1] - vals[0]) : 0)) }],
          series: this.series(lines),
        }, data, el);
      }
      return data[0].length;
    }
    zoomed() {
      if (!this.plot) return false;
      const xs = this.plot.data[0];
      const scale = this.plot.scales.x;
      return xs.length > 1 && (scale.min > xs[0] || scale.max < xs[xs.length - 1]);
    }
    resetZoom() {
      if (!this.plot) return;
      const xs = this.plot.data[0];
      if (xs.length) this.plot.setScale("x", { min: xs[0], max: xs[xs.length - 1] });
    }
    width(el) { return Math.max(280, el.clientWidth - 8); }
    resize() {
      const el = document.getElementById(this.spec.el);
      if (this.plot && el) this.plot.setSize({ width: this.width(el), height: this.spec.height || 200 });
    }
  }

  // A group of charts with shared options (x axis, smoothing), redrawn at most once per frame.
  class ChartBoard {
    constructor(specs, options) {
      this.options = Object.assign({ axis: "step", smoothing: 0 }, options || {});
      this.charts = specs.map((s) => new MetricChart(s, this.options));
      this.pending = false;
      window.addEventListener("resize", () => this.charts.forEach((c) => c.resize()));
    }
    redraw() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.draw(); });
    }
    draw() {
      let points = 0;
      for (const c of this.charts) points += c.render();
      if (this.onDraw) this.onDraw(points);
    }
    set(name, value) { this.options[name] = value; this.draw(); }
    resetZoom() { this.charts.forEach((c) => c.resetZoom()); }
    // wire the standard toolbar: #x-axis select, #smoothing range + #smoothing-value, #reset-zoom
    bindToolbar(root) {
      const axis = root.querySelector("[data-x-axis]");
      const smoothing = root.querySelector("[data-smoothing]");
      const shown = root.querySelector("[data-smoothing-value]");
      const reset = root.querySelector("[data-reset-zoom]");
      if (axis) { this.options.axis = axis.value; axis.addEventListener("change", () => this.set("axis", axis.value)); }
      if (smoothing) {
        this.options.smoothing = Number(smoothing.value);
        const update = () => { if (shown) shown.textContent = Number(smoothing.value).toFixed(2); this.set("smoothing", Number(smoothing.value)); };
        smoothing.addEventListener("input", update);
        if (shown) shown.textContent = Number(smoothing.value).toFixed(2);
      }
      if (reset) reset.addEventListener("click", () => this.resetZoom());
    }
  }

  window.tunedeckCharts = { MetricStore, ChartBoard, smooth, align };
})();
