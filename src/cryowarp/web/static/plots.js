// Canvas helpers shared by the plots: device-pixel-ratio sizing, nice ticks, axes, formats.

export const COLORS = {
  text: "#c9d1d9",
  muted: "#7d8590",
  grid: "rgba(139, 148, 158, 0.14)",
  axis: "#3d444d",
  accepted: "#4cc2ff",
  rejected: "#f0883e",
  include: "#3fb950",
  exclude: "#f85149",
  band: "rgba(76, 194, 255, 0.08)",
  outside: "rgba(1, 4, 9, 0.35)",
  bound: "#e3b341",
};

export const FONT = "11px system-ui, -apple-system, 'Segoe UI', sans-serif";

/**
 * Size `canvas` to its CSS box times devicePixelRatio; returns the 2-D context scaled so that
 * drawing is in CSS pixels, with `width`/`height` in CSS pixels.
 */
export function fitCanvas(canvas, cssHeight) {
  const dpr = window.devicePixelRatio || 1;
  const width = Math.max(50, Math.round(canvas.clientWidth || canvas.parentElement.clientWidth));
  const height = Math.round(cssHeight ?? canvas.clientHeight ?? 150);
  if (cssHeight !== undefined) canvas.style.height = `${height}px`;
  const w = Math.round(width * dpr);
  const h = Math.round(height * dpr);
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count = 4) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

/** `value` with as many decimals as a resolution of `step` needs. */
export function formatStep(value, step) {
  let decimals = Math.max(0, -Math.floor(Math.log10(Math.abs(step) || 1) + 1e-9));
  // 0.25, 0.0025: one more decimal than the power of ten says
  while (decimals < 8 && Math.abs(step * 10 ** decimals - Math.round(step * 10 ** decimals)) > 1e-6) {
    decimals++;
  }
  return value.toFixed(decimals);
}

/** A number for a table or label: "–" for null, else `digits` decimals. */
export function fmt(value, digits = 2, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const text = typeof value === "number" ? value.toFixed(digits) : String(value);
  return unit ? `${text} ${unit}` : text;
}

/** Linear map from [d0, d1] to [r0, r1]. */
export function scale(d0, d1, r0, r1) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  const f = (v) => r0 + (v - d0) * k;
  f.invert = (p) => (k === 0 ? d0 : d0 + (p - r0) / k);
  return f;
}

/** Minimum and maximum of the finite numbers in `values` (null when there are none). */
export function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v === null || v === undefined || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

/**
 * Axes with grid lines inside the box `area` = {left, top, right, bottom} (CSS px):
 * `xTicks`/`yTicks` are [value, label] pairs, `x`/`y` the value→pixel maps.
 */
export function drawAxes(ctx, area, { x, y, xTicks, yTicks, xLabel, yLabel }) {
  ctx.save();
  ctx.font = FONT;
  ctx.lineWidth = 1;
  ctx.strokeStyle = COLORS.grid;
  ctx.fillStyle = COLORS.muted;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const [value, label] of yTicks) {
    const py = Math.round(y(value)) + 0.5;
    if (py < area.top - 1 || py > area.bottom + 1) continue;
    ctx.beginPath();
    ctx.moveTo(area.left, py);
    ctx.lineTo(area.right, py);
    ctx.stroke();
    ctx.fillText(label, area.left - 5, py);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const [value, label] of xTicks) {
    const px = Math.round(x(value)) + 0.5;
    if (px < area.left - 1 || px > area.right + 1) continue;
    ctx.beginPath();
    ctx.moveTo(px, area.bottom);
    ctx.lineTo(px, area.bottom + 4);
    ctx.strokeStyle = COLORS.axis;
    ctx.stroke();
    ctx.fillText(label, px, area.bottom + 6);
  }
  ctx.strokeStyle = COLORS.axis;
  ctx.strokeRect(area.left + 0.5, area.top + 0.5, area.right - area.left, area.bottom - area.top);
  if (xLabel) {
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillText(xLabel, (area.left + area.right) / 2, area.bottom + 17);
  }
  if (yLabel) {
    ctx.translate(11, (area.top + area.bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(yLabel, 0, 0);
  }
  ctx.restore();
}

/** Colour of `t` in [0, 1] on a perceptually ordered map (viridis-like), as [r, g, b]. */
export function colorMap(t) {
  const stops = [
    [68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37],
  ];
  const u = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(u));
  const f = u - i;
  return stops[i].map((c, k) => Math.round(c + (stops[i + 1][k] - c) * f));
}
