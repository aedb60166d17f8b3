// One overview plot: a metric over all items (x: acquisition order, y: value) with the
// filter range as a band whose bounds are dragged by `.handle-min` / `.handle-max`.

import { COLORS, drawAxes, extent, fitCanvas, formatStep, niceTicks, scale } from "./plots.js";

const HEIGHT = 176; // CSS px of the canvas
const MARGIN = { left: 46, right: 18, top: 8, bottom: 30 };
const HANDLE_PX = 8;
const EDGE_PX = 3; // a bound released this close to the edge of the axis is cleared
const HIT_PX = 6;

const unitText = (metric) => (metric.unit ? ` ${metric.unit}` : "");

/** Whether the metric takes whole numbers (particle counts). */
export const isInteger = (metric) => metric.integer === true || metric.key === "particles";

export class MetricPlot {
  /**
   * @param metric  the descriptor {key, label, unit, min_key, max_key}
   * @param hooks   {preview(key, lo, hi), commit(body), open(name), dragging(bool), tooltip}
   */
  constructor(metric, hooks) {
    this.metric = metric;
    this.hooks = hooks;
    this.data = null;
    this.drag = null;
    this.layout = null;

    const el = document.createElement("div");
    el.className = "metric-plot";
    el.dataset.metric = metric.key;
    const head = document.createElement("div");
    head.className = "plot-head";
    const title = document.createElement("span");
    title.className = "plot-title";
    title.textContent = metric.label + (metric.unit ? ` (${metric.unit})` : "");
    this.rangeText = document.createElement("span");
    this.rangeText.className = "range-text";
    this.clearButton = document.createElement("button");
    this.clearButton.type = "button";
    this.clearButton.className = "clear-range";
    this.clearButton.textContent = "×";
    this.clearButton.title = "Clear this range";
    this.clearButton.addEventListener("click", () => this.clear());
    head.append(title, this.rangeText, this.clearButton);

    this.area = document.createElement("div");
    this.area.className = "plot-area";
    this.canvas = document.createElement("canvas");
    this.area.append(this.canvas);
    this.handles = {};
    for (const which of ["min", "max"]) {
      if (!metric[`${which}_key`]) continue;
      const handle = document.createElement("div");
      handle.className = `handle-${which}`;
      handle.title = `Drag to set the ${which === "min" ? "lowest" : "highest"} ${metric.label.toLowerCase()}`;
      handle.addEventListener("pointerdown", (event) => this.startDrag(which, event));
      this.area.append(handle);
      this.handles[which] = handle;
    }
    el.append(head, this.area);
    el.pointPosition = (i) => this.pointPosition(i); // where item i is drawn (used by tests)
    this.element = el;

    this.canvas.addEventListener("pointermove", (event) => this.hover(event));
    this.canvas.addEventListener("pointerleave", () => this.hooks.tooltip.hide());
    this.canvas.addEventListener("click", (event) => {
      const hit = this.pick(event);
      if (hit !== null) this.hooks.open(this.data.items.name[hit]);
    });
    new ResizeObserver(() => this.draw()).observe(this.area);
  }

  /** The overview answer to show. */
  update(data) {
    this.data = data;
    if (!this.drag) this.draw();
  }

  /** The bounds in force: the dragged one replaces its filter value while dragging. */
  bounds() {
    const f = (this.data && this.data.filters) || {};
    const m = this.metric;
    let lo = m.min_key ? f[m.min_key] ?? null : null;
    let hi = m.max_key ? f[m.max_key] ?? null : null;
    if (this.drag) {
      if (this.drag.which === "min") lo = this.drag.value;
      else hi = this.drag.value;
    }
    return { lo, hi };
  }

  computeLayout(width) {
    const values = this.data.items[this.metric.key] || [];
    const n = this.data.items.name.length;
    const f = this.data.filters || {};
    const m = this.metric;
    const seen = [...values];
    if (m.min_key && f[m.min_key] != null) seen.push(f[m.min_key]);
    if (m.max_key && f[m.max_key] != null) seen.push(f[m.max_key]);
    let [lo, hi] = extent(seen) || [0, 1];
    const span = hi - lo || Math.abs(hi) * 0.2 || 1;
    lo -= span * 0.08;
    hi += span * 0.08;
    if (lo < 0 && (extent(values) || [0])[0] >= 0) lo = Math.max(lo, -span * 0.02);
    const area = {
      left: MARGIN.left, top: MARGIN.top, right: width - MARGIN.right, bottom: HEIGHT - MARGIN.bottom,
    };
    return {
      area,
      n,
      x: scale(-0.5, Math.max(n, 1) - 0.5, area.left + 3, area.right - 3),
      y: scale(lo, hi, area.bottom, area.top),
      yDomain: [lo, hi],
    };
  }

  /** Round a dragged value to the metric's resolution. */
  roundValue(value) {
    if (isInteger(this.metric)) return Math.round(value);
    const [lo, hi] = this.layout.yDomain;
    const step = 10 ** (Math.floor(Math.log10(hi - lo || 1)) - 2);
    return Number((Math.round(value / step) * step).toFixed(6));
  }

  draw() {
    if (!this.data || !this.area.clientWidth) return; // hidden: drawn when shown
    const started = performance.now();
    const { ctx, width } = fitCanvas(this.canvas, HEIGHT);
    const L = (this.layout = this.computeLayout(width));
    const { area, x, y } = L;
    const m = this.metric;
    const yStep = niceTicks(...L.yDomain, 4);
    const stepSize = yStep.length > 1 ? yStep[1] - yStep[0] : 1;
    const xTicks = niceTicks(0, Math.max(L.n - 1, 1), 5).filter((t) => Number.isInteger(t));
    drawAxes(ctx, area, {
      x, y,
      xTicks: xTicks.map((t) => [t, String(t)]),
      yTicks: yStep.map((t) => [t, formatStep(t, stepSize)]),
      xLabel: "item (acquisition order)",
      yLabel: m.unit || "",
    });

    // the filter band: darken what lies outside, lines at the set bounds
    const { lo, hi } = this.bounds();
    const yHi = hi === null ? area.top : Math.max(area.top, Math.min(area.bottom, y(hi)));
    const yLo = lo === null ? area.bottom : Math.max(area.top, Math.min(area.bottom, y(lo)));
    ctx.save();
    ctx.beginPath();
    ctx.rect(area.left, area.top, area.right - area.left, area.bottom - area.top);
    ctx.clip();
    if (lo !== null || hi !== null) {
      ctx.fillStyle = COLORS.band;
      ctx.fillRect(area.left, yHi, area.right - area.left, yLo - yHi);
      ctx.fillStyle = COLORS.outside;
      ctx.fillRect(area.left, area.top, area.right - area.left, yHi - area.top);
      ctx.fillRect(area.left, yLo, area.right - area.left, area.bottom - yLo);
    }
    this.drawPoints(ctx);
    ctx.strokeStyle = COLORS.bound;
    ctx.lineWidth = 1.5;
    for (const [value, py] of [[hi, yHi], [lo, yLo]]) {
      if (value === null) continue;
      ctx.beginPath();
      ctx.moveTo(area.left, py);
      ctx.lineTo(area.right, py);
      ctx.stroke();
    }
    ctx.restore();
    this.placeHandles(yLo, yHi);
    this.showRangeText(lo, hi);
    this.element.dataset.drawMs = (performance.now() - started).toFixed(1);
  }

  drawPoints(ctx) {
    const { x, y } = this.layout;
    const items = this.data.items;
    const values = items[this.metric.key] || [];
    const n = values.length;
    const size = n > 2000 ? 2 : n > 300 ? 3 : 4;
    const half = size / 2;
    const passes = [
      [COLORS.rejected, (i) => !items.accepted[i]],
      [COLORS.accepted, (i) => items.accepted[i]],
    ];
    for (const [color, keep] of passes) {
      ctx.fillStyle = color;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === null || v === undefined || !keep(i)) continue;
        ctx.fillRect(x(i) - half, y(v) - half, size, size);
      }
    }
    ctx.lineWidth = 1.2;
    for (let i = 0; i < n; i++) {
      const v = values[i];
      const sel = items.selection ? items.selection[i] : "auto";
      if (v === null || v === undefined || sel === "auto") continue;
      ctx.strokeStyle = sel === "include" ? COLORS.include : COLORS.exclude;
      ctx.beginPath();
      ctx.arc(x(i), y(v), size / 2 + 3, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }

  format(value) {
    if (isInteger(this.metric)) return String(Math.round(value));
    const [lo, hi] = this.layout ? this.layout.yDomain : [0, 1];
    return formatStep(value, 10 ** (Math.floor(Math.log10(hi - lo || 1)) - 2));
  }

  placeHandles(yLo, yHi) {
    const { area } = this.layout;
    for (const [which, py] of [["min", yLo], ["max", yHi]]) {
      const handle = this.handles[which];
      if (!handle) continue;
      handle.style.left = `${area.left}px`;
      handle.style.width = `${area.right - area.left}px`;
      handle.style.top = `${py - HANDLE_PX / 2}px`;
      const set = this.bounds()[which === "min" ? "lo" : "hi"] !== null;
      handle.classList.toggle("set", set);
    }
  }

  showRangeText(lo, hi) {
    const u = unitText(this.metric);
    let text = "";
    if (lo !== null && hi !== null) text = `${this.format(lo)} – ${this.format(hi)}${u}`;
    else if (hi !== null) text = `≤ ${this.format(hi)}${u}`;
    else if (lo !== null) text = `≥ ${this.format(lo)}${u}`;
    else text = "no limit";
    this.rangeText.textContent = text;
    this.clearButton.classList.toggle("inactive", lo === null && hi === null && !this.drag);
  }

  startDrag(which, event) {
    if (!this.layout || event.button !== 0) return;
    event.preventDefault();
    const handle = this.handles[which];
    try {
      handle.setPointerCapture(event.pointerId);
    } catch {
      // a synthetic event without an active pointer: the handle's own events still arrive
    }
    const box = this.area.getBoundingClientRect();
    const { lo, hi } = this.bounds();
    const current = which === "min" ? lo : hi;
    const { area, y } = this.layout;
    const py = current === null ? (which === "min" ? area.bottom : area.top) : y(current);
    this.drag = { which, value: current, start: current, grab: event.clientY - box.top - py };
    handle.classList.add("dragging");
    this.hooks.dragging(true);
    this.hooks.tooltip.hide();
    const move = (e) => this.moveDrag(e);
    const up = (e) => {
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", up);
      handle.removeEventListener("pointercancel", up);
      this.endDrag(e.type === "pointercancel");
    };
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", up);
    handle.addEventListener("pointercancel", up);
  }

  moveDrag(event) {
    const drag = this.drag;
    if (!drag) return;
    const { area, y } = this.layout;
    const box = this.area.getBoundingClientRect();
    let py = event.clientY - box.top - drag.grab;
    const f = this.data.filters || {};
    const m = this.metric;
    // keep min ≤ max
    if (drag.which === "max") {
      const other = m.min_key && f[m.min_key] != null ? y(f[m.min_key]) : area.bottom;
      py = Math.min(py, other);
    } else {
      const other = m.max_key && f[m.max_key] != null ? y(f[m.max_key]) : area.top;
      py = Math.max(py, other);
    }
    py = Math.max(area.top, Math.min(area.bottom, py));
    const atEdge = drag.which === "max" ? py <= area.top + EDGE_PX : py >= area.bottom - EDGE_PX;
    drag.value = atEdge ? null : this.roundValue(y.invert(py));
    const { lo, hi } = this.bounds();
    this.hooks.preview(m.key, lo, hi);
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.draw();
      });
    }
  }

  endDrag(cancelled) {
    const drag = this.drag;
    this.drag = null;
    this.handles[drag.which].classList.remove("dragging");
    this.hooks.dragging(false);
    const key = this.metric[`${drag.which}_key`];
    if (!cancelled && drag.value !== drag.start) {
      this.hooks.commit({ [key]: drag.value }, this);
    } else {
      this.hooks.preview(null);
    }
    this.draw();
  }

  /** Optimistically show `body` (filter key → value) until the server answers. */
  applyLocally(body) {
    this.data = { ...this.data, filters: { ...this.data.filters, ...body } };
    this.draw();
  }

  clear() {
    const body = {};
    if (this.metric.min_key) body[this.metric.min_key] = null;
    if (this.metric.max_key) body[this.metric.max_key] = null;
    this.hooks.commit(body, this);
  }

  /** Viewport coordinates {x, y} of item `i`'s point, or null when it is not drawn. */
  pointPosition(i) {
    const v = this.data && this.layout ? this.data.items[this.metric.key][i] : null;
    if (v === null || v === undefined) return null;
    const box = this.canvas.getBoundingClientRect();
    return { x: box.left + this.layout.x(i), y: box.top + this.layout.y(v) };
  }

  /** Index of the item drawn nearest to the pointer (within a few px), or null. */
  pick(event) {
    if (!this.layout || !this.data) return null;
    const box = this.canvas.getBoundingClientRect();
    const px = event.clientX - box.left;
    const py = event.clientY - box.top;
    const { x, y } = this.layout;
    const values = this.data.items[this.metric.key] || [];
    const i0 = Math.max(0, Math.floor(x.invert(px - HIT_PX)));
    const i1 = Math.min(values.length - 1, Math.ceil(x.invert(px + HIT_PX)));
    let best = null;
    let bestD = HIT_PX * HIT_PX;
    for (let i = i0; i <= i1; i++) {
      const v = values[i];
      if (v === null || v === undefined) continue;
      const d = (x(i) - px) ** 2 + (y(v) - py) ** 2;
      if (d <= bestD) {
        bestD = d;
        best = i;
      }
    }
    return best;
  }

  hover(event) {
    if (this.drag) return;
    const i = this.pick(event);
    this.canvas.style.cursor = i === null ? "crosshair" : "pointer";
    if (i === null) {
      this.hooks.tooltip.hide();
      return;
    }
    const items = this.data.items;
    const v = items[this.metric.key][i];
    const sel = items.selection ? items.selection[i] : "auto";
    const lines = [
      `<b>${escapeHtml(items.name[i])}</b> #${i}`,
      `${escapeHtml(this.metric.label)}: ${this.format(v)}${escapeHtml(unitText(this.metric))}`,
      items.accepted[i] ? "selected" : `rejected${items.reason[i] ? `: ${escapeHtml(items.reason[i])}` : ""}`,
    ];
    if (sel !== "auto") lines.push(`manual: ${sel}`);
    this.hooks.tooltip.show(event.clientX, event.clientY, lines.join("<br>"));
  }
}

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
