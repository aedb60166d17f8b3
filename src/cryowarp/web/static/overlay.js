// What is drawn over the micrograph: motion tracks, the local defocus map and the picks.
// Positions are in Å from the top-left corner, x right, y down; a point lies at
// (x_a / field_x_a, y_a / field_y_a) of the displayed image (docs/dashboard_api.md).

import { colorMap, fitCanvas, fmt } from "./plots.js";

export const TRACK_EXAGGERATION = 20;
const DEFOCUS_ALPHA = 0.45;

/**
 * Draw the overlay of `item` (the item API answer) on `canvas`, which covers the image.
 * `picks`: the picks API answer or null; `show`: {tracks, defocus, picks}.
 * Returns the number of picks drawn.
 */
export function drawOverlay(canvas, item, picks, show) {
  const { ctx, width, height } = fitCanvas(canvas); // CSS size: that of the image
  if (!item || !item.field_size_xy_a || width < 2 || height < 2) return 0;
  const [fx, fy] = item.field_size_xy_a;
  const sx = width / fx;
  const sy = height / fy;
  if (show.defocus && item.ctf && item.ctf.defocus_grid_um) {
    drawDefocus(ctx, item.ctf.defocus_grid_um, width, height);
  }
  let drawn = 0;
  if (show.picks && picks && picks.x_a) {
    drawn = drawPicks(ctx, picks, sx, sy);
  }
  if (show.tracks && item.motion) drawTracks(ctx, item.motion, fx, fy, sx, sy);
  return drawn;
}

function drawPicks(ctx, picks, sx, sy) {
  const radius = Math.max(2, (picks.diameter_a / 2) * sx);
  ctx.save();
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = "rgba(80, 250, 123, 0.9)";
  ctx.shadowColor = "rgba(0, 0, 0, 0.8)";
  ctx.shadowBlur = 2;
  ctx.beginPath();
  const n = Math.min(picks.x_a.length, picks.y_a.length);
  for (let i = 0; i < n; i++) {
    const px = picks.x_a[i] * sx;
    const py = picks.y_a[i] * sy;
    ctx.moveTo(px + radius, py);
    ctx.arc(px, py, radius, 0, 2 * Math.PI);
  }
  ctx.stroke();
  ctx.restore();
  return n;
}

function polyline(ctx, origin, track, sx, sy) {
  const [x0, y0] = track[0];
  ctx.beginPath();
  track.forEach(([x, y], t) => {
    const px = (origin[0] + (x - x0) * TRACK_EXAGGERATION) * sx;
    const py = (origin[1] + (y - y0) * TRACK_EXAGGERATION) * sy;
    if (t === 0) ctx.moveTo(px, py);
    else ctx.lineTo(px, py);
  });
  ctx.stroke();
}

function drawTracks(ctx, motion, fx, fy, sx, sy) {
  ctx.save();
  ctx.lineJoin = "round";
  ctx.lineCap = "round";
  ctx.shadowColor = "rgba(0, 0, 0, 0.9)";
  ctx.shadowBlur = 3;
  const positions = motion.patch_positions_a || [];
  const shifts = motion.patch_shifts_a || [];
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = "rgba(255, 214, 10, 0.95)";
  positions.forEach((origin, p) => {
    const track = shifts[p];
    if (!track || track.length < 2) return;
    polyline(ctx, origin, track, sx, sy);
    ctx.fillStyle = "rgba(255, 214, 10, 0.95)";
    ctx.beginPath();
    ctx.arc(origin[0] * sx, origin[1] * sy, 2, 0, 2 * Math.PI);
    ctx.fill();
  });
  const global = motion.global_track_a;
  if (global && global.length > 1) {
    ctx.lineWidth = 2.5;
    ctx.strokeStyle = "rgba(255, 85, 85, 0.95)";
    polyline(ctx, [fx / 2, fy / 2], global, sx, sy);
    ctx.fillStyle = "rgba(255, 85, 85, 0.95)";
    ctx.beginPath();
    ctx.arc((fx / 2) * sx, (fy / 2) * sy, 3, 0, 2 * Math.PI);
    ctx.fill();
  }
  ctx.restore();
}

/** Minimum and maximum of a grid (rows of numbers). */
export function gridRange(grid) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const row of grid) {
    for (const v of row) {
      if (!Number.isFinite(v)) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  return lo <= hi ? [lo, hi] : [0, 0];
}

/** Value of `grid` (nodes spread from edge to edge) at fractions (u, v) ∈ [0, 1]², bilinear. */
export function bilinear(grid, u, v) {
  const rows = grid.length;
  const cols = grid[0].length;
  const gy = Math.min(Math.max(v * (rows - 1), 0), rows - 1);
  const gx = Math.min(Math.max(u * (cols - 1), 0), cols - 1);
  const y0 = Math.floor(gy);
  const x0 = Math.floor(gx);
  const y1 = Math.min(y0 + 1, rows - 1);
  const x1 = Math.min(x0 + 1, cols - 1);
  const fy = gy - y0;
  const fx = gx - x0;
  const top = grid[y0][x0] * (1 - fx) + grid[y0][x1] * fx;
  const bottom = grid[y1][x0] * (1 - fx) + grid[y1][x1] * fx;
  return top * (1 - fy) + bottom * fy;
}

function drawDefocus(ctx, grid, width, height) {
  if (!grid.length || !grid[0].length) return;
  const [lo, hi] = gridRange(grid);
  const n = 96;
  const off = document.createElement("canvas");
  off.width = n;
  off.height = n;
  const octx = off.getContext("2d");
  const pixels = octx.createImageData(n, n);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < n; i++) {
      const value = bilinear(grid, (i + 0.5) / n, (j + 0.5) / n);
      const [r, g, b] = colorMap(hi > lo ? (value - lo) / (hi - lo) : 0.5);
      const k = 4 * (j * n + i);
      pixels.data[k] = r;
      pixels.data[k + 1] = g;
      pixels.data[k + 2] = b;
      pixels.data[k + 3] = 255;
    }
  }
  octx.putImageData(pixels, 0, 0);
  ctx.save();
  ctx.globalAlpha = DEFOCUS_ALPHA;
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(off, 0, 0, width, height);
  ctx.restore();
}

/** Fill `bar` (an element) with the colour bar of the local defocus in µm. */
export function renderColorBar(bar, grid) {
  if (!grid || !grid.length) {
    bar.hidden = true;
    return;
  }
  const [lo, hi] = gridRange(grid);
  const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => `rgb(${colorMap(t).join(",")}) ${t * 100}%`);
  const rows = grid.length;
  const cols = grid[0].length;
  bar.innerHTML = `<span class="cb-label">local defocus (µm, ${cols}×${rows} grid)</span>`
    + `<span class="cb-value">${fmt(lo, 3)}</span>`
    + `<span class="cb-ramp" style="background: linear-gradient(to right, ${stops.join(", ")})"></span>`
    + `<span class="cb-value">${fmt(hi, 3)}</span>`;
  bar.hidden = false;
}
