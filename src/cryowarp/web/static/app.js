// cryowarp dashboard: hash routing (`#/` overview, `#/item/<name>` item view), polling of
// `api/overview` every 2 s and the keyboard. Plain ES modules, no libraries, no build step;
// the API is described in docs/dashboard_api.md.

import { clearStaleError, getJson, showStatus } from "./api.js";
import { createItemView } from "./item.js";
import { createOverview, renderCounts } from "./overview.js";

const POLL_MS = 2000;

const state = {
  data: null, // the latest full overview answer
  version: null,
  dragging: false,
  polling: false,
  timer: 0,
  route: null,
};

const $ = (id) => document.getElementById(id);

function go(name) {
  window.location.hash = name === null ? "#/" : `#/item/${encodeURIComponent(name)}`;
}

function parseRoute() {
  const hash = window.location.hash.replace(/^#/, "");
  const match = hash.match(/^\/item\/(.+)$/);
  if (match) {
    try {
      return { view: "item", name: decodeURIComponent(match[1]) };
    } catch {
      return { view: "item", name: match[1] };
    }
  }
  return { view: "overview" };
}

let overview;
let itemView;

function applyData(data) {
  state.data = data;
  state.version = data.version;
  renderCounts(data);
  overview.render(data);
  itemView.onOverview(data);
  document.body.dataset.version = data.version;
  document.body.dataset.ready = "1";
}

/** Fetch the overview (only when it changed unless `force`) and show it. */
async function poll({ force = false } = {}) {
  if (state.polling) return;
  state.polling = true;
  const live = $("live-indicator");
  try {
    const since = !force && state.version ? `?since=${encodeURIComponent(state.version)}` : "";
    const data = await getJson(`api/overview${since}`);
    live.classList.remove("down");
    live.title = `Live: last checked ${new Date().toLocaleTimeString()}`;
    clearStaleError();
    if (data && !data.unchanged && !state.dragging) applyData(data);
  } catch (error) {
    live.classList.add("down");
    live.title = "The server did not answer";
    showStatus(error.message);
  } finally {
    state.polling = false;
  }
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => {
    if (!state.dragging && !document.hidden) await poll();
    schedule();
  }, POLL_MS);
}

async function refresh() {
  // wait for a poll in flight, then fetch the full answer
  for (let i = 0; state.polling && i < 50; i++) await new Promise((r) => setTimeout(r, 40));
  await poll({ force: true });
}

function route() {
  const r = parseRoute();
  state.route = r;
  $("overview").hidden = r.view !== "overview";
  $("item-view").hidden = r.view !== "item";
  document.body.dataset.view = r.view;
  if (r.view === "item") {
    document.title = `${r.name} · cryowarp`;
    itemView.show(r.name);
  } else {
    document.title = state.data && state.data.project
      ? `${state.data.project.name} · cryowarp` : "cryowarp dashboard";
    overview.redraw();
  }
}

function typing(target) {
  if (!target || !target.tagName) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  return target.tagName === "INPUT" && !["range", "checkbox", "button", "radio"].includes(target.type);
}

function keydown(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  if (state.route && state.route.view === "item" && itemView.keydown(event)) {
    event.preventDefault();
    if (event.target && event.target.blur && event.target !== document.body) event.target.blur();
  }
}

function start() {
  overview = createOverview({
    open: go,
    refresh,
    setDragging: (on) => {
      state.dragging = on;
    },
  });
  itemView = createItemView({ getOverview: () => state.data, refresh, go });
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", keydown);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
  });
  route();
  poll({ force: true }).finally(schedule);
}

start();
