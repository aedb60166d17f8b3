// The item view (`#/item/<name>`): spectrum and fit, the micrograph with motion tracks,
// local defocus and picks, the item's figures, manual include/exclude and keyboard use.

import { getJson, itemUrl, putJson, reported, showStatus } from "./api.js";
import { escapeHtml } from "./metric_plot.js";
import { drawOverlay, renderColorBar } from "./overlay.js";
import { fmt } from "./plots.js";
import { drawSpectrum } from "./spectrum.js";

const KINDS = ["average", "deconvolved", "denoised"];
const $ = (id) => document.getElementById(id);

const facts = (id, rows) => {
  $(id).innerHTML = rows.length
    ? rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("")
    : '<dt class="muted">not available</dt><dd></dd>';
};

export function createItemView({ getOverview, refresh, go }) {
  let item = null; // the item API answer shown
  let name = null;
  let picks = null;
  let kind = null;
  let preferredKind = null; // the kind the user chose last
  let thresholdTouched = false;
  let loadSeq = 0;
  let picksSeq = 0;
  let picksTimer = 0;
  let spectrum = null;

  const overlay = $("micrograph-overlay");
  const show = () => ({
    tracks: $("show-tracks").checked,
    defocus: $("show-defocus").checked,
    picks: $("show-picks").checked,
  });

  function redrawOverlay() {
    const drawn = drawOverlay(overlay, item, picks, show());
    overlay.dataset.nPicks = String(drawn);
  }

  function redrawSpectrum() {
    drawSpectrum($("spectrum-plot"), spectrum, item && !item.ctf ? "no CTF estimate yet" : "");
  }

  new ResizeObserver(() => {
    if (item) {
      redrawOverlay();
      redrawSpectrum();
    }
  }).observe($("micrograph-overlay").parentElement);

  function threshold() {
    return Number($("pick-threshold").value);
  }

  function setImageKind(next) {
    kind = next;
    for (const b of $("image-kind").querySelectorAll("button")) {
      b.classList.toggle("active", b.value === kind);
    }
    $("image-kind").dataset.value = kind || "";
    const img = $("micrograph-image");
    const missing = $("micrograph-missing");
    if (!kind) {
      img.removeAttribute("src");
      img.hidden = true;
      missing.textContent = "no image yet";
      missing.hidden = false;
      return;
    }
    img.hidden = false;
    missing.hidden = true;
    img.alt = `${kind} of ${item.name}`;
    img.src = itemUrl(item.name, `/image/${kind}`);
  }

  function availableKinds() {
    const images = (item && item.images) || {};
    return KINDS.filter((k) => images[k]);
  }

  function defaultKind() {
    const kinds = availableKinds();
    if (preferredKind && kinds.includes(preferredKind)) return preferredKind;
    for (const k of ["denoised", "deconvolved", "average"]) if (kinds.includes(k)) return k;
    return null;
  }

  async function loadPicks() {
    const seq = ++picksSeq;
    if (!item || !item.picking) {
      picks = null;
      $("pick-count").textContent = "–";
      redrawOverlay();
      return;
    }
    const t = threshold();
    const answer = await reported(
      getJson(itemUrl(item.name, `/picks?threshold=${encodeURIComponent(t.toFixed(2))}`)));
    if (seq !== picksSeq) return; // a newer request was made meanwhile
    picks = answer;
    $("pick-count").textContent = answer ? String(answer.n_picks) : "–";
    overlay.dataset.threshold = answer ? String(answer.threshold) : "";
    redrawOverlay();
  }

  async function loadSpectrum() {
    spectrum = null;
    if (!item.ctf) {
      redrawSpectrum();
      return;
    }
    const current = item.name;
    const answer = await reported(getJson(itemUrl(current, "/spectrum")));
    if (!item || item.name !== current) return;
    spectrum = answer;
    redrawSpectrum();
  }

  function renderSelection() {
    $("item-selection").textContent = item.selection;
    for (const s of ["include", "exclude", "auto"]) {
      $(`select-${s}`).classList.toggle("active", item.selection === s);
    }
    const badge = $("item-accepted");
    badge.textContent = item.accepted ? "selected for export" : "not exported";
    badge.className = `badge ${item.accepted ? "yes" : "no"}`;
    const reasons = [...(item.reasons || [])];
    if (item.reason && !reasons.includes(item.reason)) reasons.unshift(item.reason);
    $("item-reasons").innerHTML = reasons.map((r) => `<span>${escapeHtml(r)}</span>`).join("");
  }

  function renderFacts() {
    const c = item.ctf;
    facts("ctf-facts", c ? [
      ["defocus", `${fmt(c.defocus_um, 3)} µm <span class="muted">(U ${fmt(c.defocus_u_um, 3)}, V ${fmt(c.defocus_v_um, 3)})</span>`],
      ["astigmatism", `${fmt(c.astigmatism_um, 3)} µm at ${fmt(c.astigmatism_angle_deg, 1)}°`],
      ["resolution", fmt(c.resolution_a, 2, "Å")],
      ["phase shift", fmt(c.phase_shift_deg, 1, "°")],
      ["fit score", fmt(c.fit_score, 3)],
      ...(c.failed ? [["fit", `<span class="state failed">failed</span> ${escapeHtml(c.reason || "")}`]] : []),
    ] : []);
    const m = item.motion;
    facts("motion-facts", m ? [
      ["frames", String(m.n_frames)],
      ["early motion", fmt(m.early_motion_a_per_frame, 2, "Å/frame")],
      ["total drift", fmt(m.total_drift_a, 1, "Å")],
      ["patches", String((m.patch_positions_a || []).length)],
    ] : []);
    const p = item.picking;
    facts("picking-facts", p ? [
      ["particles", `${p.n_picks} <span class="muted">at threshold ${fmt(p.threshold, 2)}</span>`],
      ["diameter", fmt(p.diameter_a, 0, "Å")],
      ["masked", p.masked_fraction === null || p.masked_fraction === undefined ? "–" : `${(100 * p.masked_fraction).toFixed(1)} %`],
      ["model", escapeHtml(p.model || "–")],
    ] : []);
    const steps = Object.entries(item.steps || {}).map(([step, s]) => [
      escapeHtml(step),
      `<span class="state ${escapeHtml(s.status)}">${escapeHtml(s.status)}</span>`
        + (s.seconds !== null && s.seconds !== undefined ? ` ${fmt(s.seconds, 1)} s` : "")
        + (s.reason ? ` <span class="muted">${escapeHtml(s.reason)}</span>` : ""),
    ]);
    if (item.acquired_at) steps.push(["acquired", new Date(item.acquired_at * 1000).toLocaleString()]);
    facts("step-facts", steps);
  }

  function render() {
    $("item-name").textContent = item.name;
    const state = $("item-state");
    state.textContent = item.state;
    state.className = `badge state ${item.state}`;
    const ov = getOverview();
    const total = ov ? ov.items.name.length : null;
    $("item-position").textContent = total ? `${item.index + 1} / ${total}` : "";
    $("item-prev").disabled = !item.previous;
    $("item-next").disabled = !item.next;
    renderSelection();
    renderFacts();
    const kinds = availableKinds();
    for (const b of $("image-kind").querySelectorAll("button")) b.disabled = !kinds.includes(b.value);
    const [fx, fy] = item.field_size_xy_a || [1, 1];
    const wrap = $("micrograph-image").parentElement;
    wrap.style.aspectRatio = `${fx} / ${fy}`;
    wrap.style.setProperty("--aspect", String(fx / fy));
    setImageKind(defaultKind());
    const spectrumImage = $("spectrum-image");
    if (item.images && item.images.spectrum) {
      spectrumImage.hidden = false;
      $("spectrum-missing").hidden = true;
      spectrumImage.src = itemUrl(item.name, "/image/spectrum");
    } else {
      spectrumImage.hidden = true;
      spectrumImage.removeAttribute("src");
      $("spectrum-missing").textContent = "no power spectrum yet";
      $("spectrum-missing").hidden = false;
    }
    renderColorBar($("defocus-colorbar"), $("show-defocus").checked && item.ctf ? item.ctf.defocus_grid_um : null);
    $("pick-threshold").disabled = !item.picking;
    picks = null;
    redrawOverlay();
  }

  function renderError(requested, message) {
    item = null;
    $("item-name").textContent = requested;
    $("item-state").textContent = "unavailable";
    $("item-state").className = "badge state error";
    $("item-accepted").textContent = "";
    $("item-accepted").className = "badge";
    $("item-reasons").innerHTML = `<span>${escapeHtml(message)}</span>`;
    $("micrograph-image").hidden = true;
    $("micrograph-missing").textContent = message;
    $("micrograph-missing").hidden = false;
    $("spectrum-image").hidden = true;
    for (const id of ["ctf-facts", "motion-facts", "picking-facts", "step-facts"]) facts(id, []);
    drawSpectrum($("spectrum-plot"), null, "no item");
    overlay.dataset.nPicks = "0";
  }

  async function load(requested, { keepImages = false } = {}) {
    const seq = ++loadSeq;
    document.body.dataset.itemReady = "";
    let answer;
    try {
      answer = await getJson(itemUrl(requested));
    } catch (error) {
      if (seq !== loadSeq) return;
      showStatus(error.message);
      renderError(requested, error.message);
      document.body.dataset.itemReady = requested;
      return;
    }
    if (seq !== loadSeq) return;
    const sameItem = item && item.name === answer.name;
    item = answer;
    if (!thresholdTouched) {
      const ov = getOverview();
      const t = (ov && ov.picking && ov.picking.threshold) || (item.picking && item.picking.threshold);
      if (t) setThreshold(t);
    }
    if (keepImages && sameItem) {
      renderSelection();
      renderFacts();
    } else {
      render();
    }
    await Promise.all([loadSpectrum(), loadPicks()]);
    if (seq === loadSeq) document.body.dataset.itemReady = item.name;
  }

  function setThreshold(t) {
    $("pick-threshold").value = String(t);
    $("pick-threshold-value").textContent = Number($("pick-threshold").value).toFixed(2);
  }

  async function select(selection) {
    if (!item) return;
    const answer = await reported(putJson(itemUrl(item.name, "/selection"), { selection }));
    if (!answer || !item || answer.name !== item.name) return;
    const reasons = Array.isArray(answer.reasons) ? answer.reasons : answer.reason ? [answer.reason] : [];
    item = { ...item, selection: answer.selection, accepted: answer.accepted, reasons };
    renderSelection();
    document.body.dataset.selection = `${answer.name}:${answer.selection}`;
    refresh();
  }

  function cycleKind() {
    const kinds = availableKinds();
    if (!kinds.length) return;
    const next = kinds[(kinds.indexOf(kind) + 1) % kinds.length];
    preferredKind = next;
    setImageKind(next);
  }

  function toggle(id) {
    $(id).checked = !$(id).checked;
    $(id).dispatchEvent(new Event("change"));
  }

  /** The name of the next (`step` 1) or previous (-1) item in acquisition order, or null. */
  function neighbour(step) {
    const known = item ? (step > 0 ? item.next : item.previous) : null;
    if (known) return known;
    const ov = getOverview(); // items that arrived after this one was loaded
    if (!ov || !name) return null;
    const i = ov.items.name.indexOf(name);
    return i < 0 ? null : ov.items.name[i + step] || null;
  }

  // controls
  $("image-kind").addEventListener("click", (event) => {
    const b = event.target.closest("button");
    if (!b || b.disabled) return;
    preferredKind = b.value;
    setImageKind(b.value);
  });
  for (const id of ["show-tracks", "show-picks"]) $(id).addEventListener("change", redrawOverlay);
  $("show-defocus").addEventListener("change", () => {
    renderColorBar($("defocus-colorbar"),
      $("show-defocus").checked && item && item.ctf ? item.ctf.defocus_grid_um : null);
    redrawOverlay();
  });
  $("pick-threshold").addEventListener("input", () => {
    thresholdTouched = true;
    setThreshold(threshold());
    clearTimeout(picksTimer);
    picksTimer = setTimeout(loadPicks, 120);
  });
  $("micrograph-image").addEventListener("error", () => {
    if (!item || !kind) return;
    $("micrograph-missing").textContent = `the ${kind} image is not available`;
    $("micrograph-missing").hidden = false;
  });
  $("spectrum-image").addEventListener("error", () => {
    $("spectrum-missing").textContent = "the power spectrum image is not available";
    $("spectrum-missing").hidden = false;
  });
  $("select-include").addEventListener("click", () => select("include"));
  $("select-exclude").addEventListener("click", () => select("exclude"));
  $("select-auto").addEventListener("click", () => select("auto"));
  $("item-prev").addEventListener("click", () => neighbour(-1) && go(neighbour(-1)));
  $("item-next").addEventListener("click", () => neighbour(1) && go(neighbour(1)));
  $("item-back").addEventListener("click", () => go(null));

  const keys = {
    ArrowRight: () => neighbour(1) && go(neighbour(1)),
    j: () => neighbour(1) && go(neighbour(1)),
    ArrowLeft: () => neighbour(-1) && go(neighbour(-1)),
    k: () => neighbour(-1) && go(neighbour(-1)),
    i: () => select("include"),
    x: () => select("exclude"),
    a: () => select("auto"),
    d: cycleKind,
    p: () => toggle("show-picks"),
    t: () => toggle("show-tracks"),
    f: () => toggle("show-defocus"),
    Escape: () => go(null),
  };

  return {
    /** Open item `requested` (a name). */
    show(requested) {
      name = requested;
      load(requested);
    },
    /** A new overview answer arrived: reload the figures if this item changed. */
    onOverview(data) {
      if (!name || !data) return;
      const i = data.items.name.indexOf(name);
      if (i < 0 || !item) return;
      const changed = data.items.state[i] !== item.state
        || data.items.selection[i] !== item.selection || data.items.accepted[i] !== item.accepted;
      if (changed) load(name, { keepImages: data.items.state[i] === item.state });
      else if (item.index !== undefined) {
        $("item-position").textContent = `${item.index + 1} / ${data.items.name.length}`;
      }
    },
    /** Handle a key press; returns whether it was used. */
    keydown(event) {
      const action = keys[event.key];
      if (!action) return false;
      action();
      return true;
    },
  };
}
