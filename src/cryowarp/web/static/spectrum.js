// The 1-D power spectrum of an item with its simulated CTF fit, the fit range and the
// resolution; x is spatial frequency in 1/Å, labelled with the resolution in Å.

import { COLORS, FONT, drawAxes, extent, fitCanvas, niceTicks, scale } from "./plots.js";

const HEIGHT = 190;
const MARGIN = { left: 40, right: 24, top: 20, bottom: 32 };
const RESOLUTIONS_A = [100, 50, 30, 20, 15, 12, 10, 8, 7, 6, 5, 4.5, 4, 3.5, 3, 2.5, 2, 1.5, 1];

/** Draw `spectrum` (the spectrum API answer, or null) on `canvas`; returns the points drawn. */
export function drawSpectrum(canvas, spectrum, message = "") {
  const { ctx, width, height } = fitCanvas(canvas, HEIGHT);
  const area = { left: MARGIN.left, top: MARGIN.top, right: width - MARGIN.right,
    bottom: height - MARGIN.bottom };
  const f = spectrum && spectrum.frequencies_per_a;
  if (!f || f.length < 2) {
    ctx.font = FONT;
    ctx.fillStyle = COLORS.muted;
    ctx.textAlign = "center";
    ctx.fillText(message || "no 1-D spectrum", width / 2, height / 2);
    canvas.dataset.nPoints = "0";
    return 0;
  }
  const [flo, fhi] = extent(f);
  const x = scale(flo, fhi, area.left, area.right);
  const [fitLo, fitHi] = spectrum.fit_range_per_a || [flo, fhi];
  // y range from what lies in the fit range (the lowest frequencies dwarf everything else),
  // 1st to 98th percentile so that one strong first peak does not flatten the later rings
  const inFit = [];
  f.forEach((v, i) => {
    if (v >= fitLo && v <= fitHi) inFit.push(spectrum.spectrum[i], (spectrum.simulated || [])[i]);
  });
  const finite = inFit.filter((v) => v !== null && v !== undefined && Number.isFinite(v));
  finite.sort((a, b) => a - b);
  const quantile = (q) => finite[Math.min(finite.length - 1, Math.floor(q * finite.length))];
  let [ylo, yhi] = finite.length > 4
    ? [quantile(0.01), quantile(0.98)]
    : extent(inFit) || extent(spectrum.spectrum) || [0, 1];
  const pad = (yhi - ylo || 1) * 0.08;
  ylo -= pad;
  yhi += pad;
  const y = scale(ylo, yhi, area.bottom, area.top);
  const yCorr = scale(-1, 1, area.bottom, area.top);

  const xTicks = [];
  let lastPx = -Infinity;
  for (const r of RESOLUTIONS_A) {
    const px = x(1 / r);
    if (1 / r < flo || 1 / r > fhi || px - lastPx < 34) continue;
    xTicks.push([1 / r, `${r} Å`]);
    lastPx = px;
  }
  const yTicks = niceTicks(ylo, yhi, 3).map((t) => [t, Math.abs(t) < 1e-12 ? "0" : t.toPrecision(2)]);
  drawAxes(ctx, area, { x, y, xTicks, yTicks, xLabel: "spatial frequency (1/Å), labelled as resolution", yLabel: "" });

  ctx.save();
  ctx.beginPath();
  ctx.rect(area.left, area.top, area.right - area.left, area.bottom - area.top);
  ctx.clip();
  // fit range
  ctx.fillStyle = "rgba(76, 194, 255, 0.07)";
  ctx.fillRect(x(fitLo), area.top, x(fitHi) - x(fitLo), area.bottom - area.top);
  const line = (values, map, color, widthPx) => {
    if (!values) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = widthPx;
    ctx.beginPath();
    let started = false;
    values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        started = false;
        return;
      }
      const px = x(f[i]);
      const py = map(v);
      if (!started) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
      started = true;
    });
    ctx.stroke();
  };
  line(spectrum.correlation, yCorr, "rgba(63, 185, 80, 0.55)", 1);
  line(spectrum.spectrum, y, "#d0d7de", 1);
  line(spectrum.simulated, y, "#f0883e", 1.6);
  // resolution
  const r = spectrum.resolution_a;
  if (r && 1 / r >= flo && 1 / r <= fhi) {
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = COLORS.bound;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x(1 / r), area.top);
    ctx.lineTo(x(1 / r), area.bottom);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.restore();

  ctx.font = FONT;
  ctx.textBaseline = "middle";
  if (r && 1 / r >= flo && 1 / r <= fhi) {
    ctx.fillStyle = COLORS.bound;
    const px = x(1 / r);
    const right = px > (area.left + area.right) / 2;
    ctx.textAlign = right ? "right" : "left";
    ctx.fillText(`fit to ${r.toFixed(1)} Å`, px + (right ? -4 : 4), area.top + 9);
  }
  // legend and the correlation axis
  ctx.textAlign = "left";
  const legend = [["spectrum", "#d0d7de"], ["CTF fit", "#f0883e"], ["correlation", "rgba(63, 185, 80, 0.9)"]];
  let lx = area.left;
  for (const [label, color] of legend) {
    ctx.fillStyle = color;
    ctx.fillRect(lx, area.top - 12, 10, 3);
    ctx.fillStyle = COLORS.muted;
    ctx.fillText(label, lx + 13, area.top - 10);
    lx += ctx.measureText(label).width + 26;
  }
  ctx.textAlign = "left";
  for (const t of [-1, 0, 1]) ctx.fillText(String(t), area.right + 4, yCorr(t));
  canvas.dataset.nPoints = String(f.length);
  return f.length;
}
