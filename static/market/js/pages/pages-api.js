// The JSON API as the watchlist, alerts and system pages use it: session auth, the CSRF token on
// writes, errors as ApiFormError with the server's per-field messages
// (the API answers `{"error": {"code", "message", "fields"}}`).

export class ApiFormError extends Error {
  constructor(message, { status = 0, code = "", fields = {} } = {}) {
    super(message);
    this.name = "ApiFormError";
    this.status = status;
    this.code = code;
    this.fields = fields; // {field: ["message", ...]}
  }
}

/** The CSRF token: from the page's {% csrf_token %} input, else the csrftoken cookie. */
export function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input?.value) {
    return input.value;
  }
  const cookie = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.slice("csrftoken=".length)) : "";
}

/** A request to the API; resolves to the parsed body (null for 204), rejects with ApiFormError. */
export async function apiRequest(url, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRFToken"] = csrfToken();
  }
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch {
    throw new ApiFormError("The server cannot be reached.", { code: "network" });
  }
  if (response.status === 204) {
    return null;
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // Not JSON (a proxy's error page, say): described by the status below.
  }
  if (!response.ok) {
    const error = payload?.error ?? {};
    throw new ApiFormError(error.message || `The server answered ${response.status} ${response.statusText}.`, {
      status: response.status,
      code: error.code || "",
      fields: error.fields || {},
    });
  }
  return payload;
}

/**
 * Re-render parts of this page from the server: fetch the page again and swap in the elements with
 * the same `data-fragment` name. The server renders every list; scripts never build them twice.
 */
export async function refreshFragments(names) {
  const response = await fetch(window.location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" });
  if (!response.ok) {
    throw new Error(`Could not reload the page (${response.status}).`);
  }
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const name of names) {
    const current = document.querySelector(`[data-fragment="${name}"]`);
    const replacement = fresh.querySelector(`[data-fragment="${name}"]`);
    if (current && replacement) {
      current.replaceWith(document.importNode(replacement, true));
    }
  }
}

/** Says something to screen readers (and shows it) through the page's polite live region. */
export function announce(message, { tone = "info" } = {}) {
  const region = document.querySelector("[data-announcer]");
  if (!region) {
    return;
  }
  region.dataset.tone = tone;
  region.textContent = message;
  region.hidden = !message;
}
