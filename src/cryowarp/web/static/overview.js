// The overview (`#/`): header counts, one plot per metric with draggable filter ranges,
// the latest items and the item search.

import { putJson, reported } from "./api.js";
import { MetricPlot, escapeHtml } from "./metric_plot.js";
import { fmt } from "./plots.js";

const RECENT = 50;

const $ = (id) => document.getElementById(id);

/** The tooltip that follows the pointer over plot points. */
export const tooltip = {
  show(clientX, clientY, html) {
    const tip = $("tooltip");
    tip.innerHTML = html;
    tip.hidden = false;
    const w = tip.offsetWidth;
    const left = clientX + 14 + w > window.innerWidth ? clientX - 14 - w : clientX + 14;
    tip.style.left = `${Math.max(4, left)}px`;
    tip.style.top = `${clientY + 12}px`;
  },
  hide() {
    $("tooltip").hidden = true;
  },
};

/** Fill the header counts (shown on every view) from an overview answer. */
export function renderCounts(data) {
  const c = data.counts || {};
  const text = (v) => (v === null || v === undefined ? "–" : String(v));
  $("item-count").textContent = text(c.items);
  $("count-done").textContent = text(c.done);
  $("count-failed").textContent = text(c.failed);
  $("count-pending").textContent = text(c.pending);
  $("count-selected").textContent = text(c.accepted);
  $("count-selected").classList.remove("preview");
  $("count-filtered").textContent = text(c.filtered);
  $("count-exported").textContent = text(c.exported);
  const t = data.throughput_movies_per_hour;
  $("throughput").textContent = t === null || t === undefined ? "–" : `${t.toFixed(1)} movies/h`;
  const lat = data.latency_s;
  $("latency").textContent = lat && lat.count
    ? `${fmt(lat.median, 1)} / ${fmt(lat.p90, 1)} s` : "–";
  $("latency").parentElement.title = lat && lat.count
    ? `File complete → item done over ${lat.count} items: median / p90 (max ${fmt(lat.max, 1)} s)`
    : "File complete → item done: median / p90 (watch mode only)";
  const project = data.project || {};
  $("project-name").textContent = project.name || "";
  $("project-name").title = project.folder || "";
}

const inRange = (v, lo, hi) => v !== null && v !== undefined
  && (lo === null || lo === undefined || v >= lo) && (hi === null || hi === undefined || v <= hi);

/**
 * The number of items selected if metric `key` had the range [lo, hi]: the server's
 * decisions, tightened by the new range; an item rejected only by this metric's old range
 * (every other plotted range passed) is counted when the new one takes it.
 */
export function previewCount(data, key, lo, hi) {
  const items = data.items;
  const f = data.filters || {};
  const metrics = data.metrics || [];
  const metric = metrics.find((m) => m.key === key);
  const oldLo = metric.min_key ? f[metric.min_key] : null;
  const oldHi = metric.max_key ? f[metric.max_key] : null;
  const include = Array.isArray(f.include) ? new Set(f.include) : null;
  const others = metrics.filter((m) => m.key !== key);
  let count = 0;
  for (let i = 0; i < items.name.length; i++) {
    if (items.state[i] !== "done") continue;
    const sel = items.selection ? items.selection[i] : "auto";
    if (sel === "include" || sel === "exclude") {
      if (items.accepted[i]) count++;
      continue;
    }
    const v = items[key][i];
    if (!inRange(v, lo, hi)) continue;
    if (items.accepted[i]) {
      count++;
      continue;
    }
    if (inRange(v, oldLo, oldHi)) continue; // rejected for another reason
    if (f.total_drift_max_a !== null && f.total_drift_max_a !== undefined) continue;
    if (include && !include.has(items.name[i])) continue;
    const othersPass = others.every((m) => {
      const mLo = m.min_key ? f[m.min_key] : null;
      const mHi = m.max_key ? f[m.max_key] : null;
      if ((mLo === null || mLo === undefined) && (mHi === null || mHi === undefined)) return true;
      return inRange(items[m.key][i], mLo, mHi);
    });
    if (othersPass) count++;
  }
  return count;
}

export function createOverview({ open, refresh, setDragging }) {
  const plotsBox = $("metric-plots");
  let plots = [];
  let metricsKey = "";
  let data = null;
  let namesKey = "";
  let writes = 0;

  const hooks = {
    tooltip,
    open,
    dragging: setDragging,
    preview(key, lo, hi) {
      const el = $("count-selected");
      if (key === null || !data) {
        el.textContent = data ? String(data.counts.accepted) : "–";
        el.classList.remove("preview");
        return;
      }
      el.textContent = String(previewCount(data, key, lo, hi));
      el.classList.add("preview");
    },
    async commit(body, plot) {
      plot.applyLocally(body);
      writes++;
      setDragging(true); // no poll answer may draw the old range meanwhile
      try {
        const answer = await reported(putJson("api/filters", body));
        if (answer && data) data = { ...data, filters: answer.filters };
      } finally {
        writes--;
        setDragging(false);
        await refresh();
      }
    },
  };

  function buildPlots(metrics) {
    const key = JSON.stringify(metrics);
    if (key === metricsKey) return;
    metricsKey = key;
    plotsBox.replaceChildren();
    plots = metrics.map((m) => new MetricPlot(m, hooks));
    for (const p of plots) plotsBox.append(p.element);
  }

  function renderRecent() {
    const items = data.items;
    const n = items.name.length;
    const rows = [];
    for (let i = n - 1; i >= Math.max(0, n - RECENT); i--) {
      const name = items.name[i];
      const state = items.state[i];
      const ok = items.accepted[i];
      const sel = items.selection ? items.selection[i] : "auto";
      const why = items.reason[i] ? escapeHtml(items.reason[i]) : "";
      const mark = ok ? "✓" : state === "done" ? "✗" : "";
      const manual = sel !== "auto" ? ` <span class="manual ${sel}">${sel}</span>` : "";
      rows.push(
        `<tr data-name="${escapeHtml(name)}" title="${why}">`
        + `<td class="name">${escapeHtml(name)}</td>`
        + `<td><span class="state ${escapeHtml(state)}">${escapeHtml(state)}</span></td>`
        + `<td class="num">${fmt(items.defocus_um ? items.defocus_um[i] : null, 2)}</td>`
        + `<td class="num">${fmt(items.ctf_resolution_a ? items.ctf_resolution_a[i] : null, 1)}</td>`
        + `<td class="num">${fmt(items.particles ? items.particles[i] : null, 0)}</td>`
        + `<td class="${ok ? "yes" : "no"}">${mark}${manual}</td></tr>`,
      );
    }
    $("recent-items").tBodies[0].innerHTML = rows.join("")
      || '<tr><td colspan="6" class="muted">no items yet</td></tr>';
  }

  function renderNames() {
    const names = data.items.name;
    const key = `${names.length}:${names[0]}:${names[names.length - 1]}`;
    if (key === namesKey) return;
    namesKey = key;
    const list = $("item-names");
    list.replaceChildren(...names.map((n) => {
      const option = document.createElement("option");
      option.value = n;
      return option;
    }));
  }

  function renderExportInfo() {
    const e = data.last_export;
    const p = data.picking || {};
    const rows = [
      ["project", escapeHtml((data.project || {}).folder || "")],
      ["last export", e ? `${new Date(e.time * 1000).toLocaleString()} → ${escapeHtml(e.out)}` : "never"],
    ];
    if (e) rows.push(["exported", `${e.n_micrographs} micrographs, ${e.n_particles ?? "–"} particles`]);
    rows.push(["excluded manually", String((data.counts || {}).excluded_manually ?? 0)]);
    rows.push(["pick threshold", fmt(p.threshold, 2)], ["particle diameter", fmt(p.diameter_a, 0, "Å")]);
    $("export-info").innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("");
  }

  // the item search: Enter opens the item typed (or the only one whose name contains it)
  $("item-search").addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !data) return;
    const text = event.target.value.trim();
    if (!text) return;
    const names = data.items.name;
    let name = names.includes(text) ? text : null;
    if (!name) {
      const hits = names.filter((n) => n.includes(text));
      if (hits.length === 1) name = hits[0];
    }
    if (name) {
      event.target.value = "";
      open(name);
    } else {
      open(text); // the item view reports the server's answer for an unknown name
    }
  });
  $("recent-items").addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-name]");
    if (row) open(row.dataset.name);
  });

  return {
    /** Show an overview answer. */
    render(next) {
      data = next;
      buildPlots(next.metrics || []);
      for (const p of plots) p.update(next);
      renderRecent();
      renderNames();
      renderExportInfo();
    },
    redraw() {
      for (const p of plots) p.draw();
    },
    get pendingWrites() {
      return writes;
    },
  };
}
