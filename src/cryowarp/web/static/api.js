// Requests to the dashboard API (docs/dashboard_api.md) and the status line.
// Every URL is relative, so the page also works behind a path prefix.

const statusLine = () => document.getElementById("status-line");

/** An API answer that was not 2xx: `message` is the server's `error` text. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function request(method, url, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new ApiError(`server not reachable (${method} ${url}): ${error.message}`, 0);
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    let message = data && typeof data.error === "string" ? data.error : text.slice(0, 200);
    if (data && Array.isArray(data.detail)) {
      message = data.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
    }
    throw new ApiError(`${response.status}: ${message || response.statusText} (${method} ${url})`,
      response.status);
  }
  return data;
}

export const getJson = (url) => request("GET", url);
export const putJson = (url, body) => request("PUT", url, body);

/** URL of an item's resource: `item` is encoded, `suffix` starts with "/" or is empty. */
export const itemUrl = (name, suffix = "") => `api/items/${encodeURIComponent(name)}${suffix}`;

let errorShownAt = 0;

/** Show `message` in the status line (`kind`: "error" or "info"). */
export function showStatus(message, kind = "error") {
  const line = statusLine();
  if (!line) return;
  line.textContent = message;
  line.className = message ? kind : "";
  if (kind === "error") errorShownAt = Date.now();
}

/** Clear the status line once an error has been visible for a while. */
export function clearStaleError(minAgeMs = 4000) {
  const line = statusLine();
  if (line && line.textContent && Date.now() - errorShownAt > minAgeMs) showStatus("", "info");
}

/** Run `promise`, showing its failure in the status line; returns null on failure. */
export async function reported(promise) {
  try {
    return await promise;
  } catch (error) {
    showStatus(error.message || String(error));
    return null;
  }
}
