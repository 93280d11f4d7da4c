// The REST API as the chart page uses it. Errors come back as ApiError with the server's message
// (the API answers `{"error": {"code", "message", "fields"}}`).

export class ApiError extends Error {
  constructor(message, { status = 0, code = "", retryAfter = null, fields = {} } = {}) {
    super(message);
    this.fields = fields; // field -> messages, for a form to show next to its inputs
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, when the server said (429 Too Many Requests)
  }
}

function retryAfterSeconds(response) {
  const seconds = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  return Number.isInteger(seconds) && seconds >= 0 ? seconds : null;
}

async function getJson(url, { signal } = {}) {
  return requestJson(url, { headers: { Accept: "application/json" }, signal });
}

async function requestJson(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error.name === "AbortError") {
      throw error;
    }
    throw new ApiError("The server cannot be reached.", { code: "network" });
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's error page, say): described by the status below.
  }
  if (!response.ok) {
    const message = body?.error?.message || `The server answered ${response.status} ${response.statusText}.`;
    throw new ApiError(message, {
      status: response.status,
      code: body?.error?.code || "",
      retryAfter: retryAfterSeconds(response),
      fields: body?.error?.fields ?? {},
    });
  }
  return body;
}

/** `start` and `end` (epoch seconds, each optional) as the API's ISO 8601 query parameters. */
function setTimeRange(url, start, end) {
  if (start !== undefined) {
    url.searchParams.set("start", new Date(start * 1000).toISOString());
  }
  if (end !== undefined) {
    url.searchParams.set("end", new Date(end * 1000).toISOString());
  }
}

/**
 * Bars of one series, oldest first: the newest `limit` bars before `end` (epoch seconds, exclusive),
 * or the newest overall without `end`.
 */
export async function fetchBars(barsUrl, { instrument, timeframe, limit, end, start, signal }) {
  const url = new URL(barsUrl, window.location.href);
  url.searchParams.set("instrument", String(instrument));
  url.searchParams.set("timeframe", timeframe);
  url.searchParams.set("limit", String(limit));
  setTimeRange(url, start, end);
  const body = await getJson(url, { signal });
  return body.bars;
}

/** One instrument by id (for a bookmarked instrument that is not in the selector), or null. */
export async function fetchInstrument(instrumentsUrl, id, { signal } = {}) {
  try {
    return await getJson(new URL(`${id}/`, new URL(instrumentsUrl, window.location.href)), { signal });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      return null;
    }
    throw error;
  }
}

/** Active instruments, for when the page was rendered without any. */
export async function fetchActiveInstruments(instrumentsUrl, { signal } = {}) {
  const url = new URL(instrumentsUrl, window.location.href);
  url.searchParams.set("active", "true");
  url.searchParams.set("limit", "500");
  const body = await getJson(url, { signal });
  return body.results;
}

/** The indicator catalogue: every indicator with its parameters (defaults, bounds) and outputs. */
export async function fetchCatalogue(catalogueUrl, { signal } = {}) {
  const body = await getJson(new URL(catalogueUrl, window.location.href), { signal });
  return body.indicators;
}

/**
 * Indicator columns of one series: `{time: [...], indicators: {key: {outputs: {name: [...]}}}}` for
 * the newest `limit` bars before `end`, or from `start` on (epoch seconds).
 */
export async function fetchIndicators(instrumentsUrl, query) {
  const { instrument, timeframe, names, params, limit, start, end, signal } = query;
  const url = new URL(`${instrument}/indicators/`, new URL(instrumentsUrl, window.location.href));
  url.searchParams.set("timeframe", timeframe);
  url.searchParams.set("names", names);
  if (params) {
    url.searchParams.set("params", params);
  }
  url.searchParams.set("limit", String(limit));
  setTimeRange(url, start, end);
  return getJson(url, { signal });
}

/** The signed-in user's active alert rules on one instrument. */
export async function fetchAlertRules(rulesUrl, { instrument, signal }) {
  const url = new URL(rulesUrl, window.location.href);
  url.searchParams.set("instrument", String(instrument));
  url.searchParams.set("active", "true");
  url.searchParams.set("limit", "200");
  const body = await getJson(url, { signal });
  return body.results ?? body;
}

/** Create an alert rule with the session's cookie. */
export async function createAlertRule(rulesUrl, rule, csrfToken) {
  return sendJson(new URL(rulesUrl, window.location.href), "POST", rule, csrfToken);
}

/** Change some fields of one of the user's alert rules (`{level}` when its line is moved). */
export async function updateAlertRule(rulesUrl, id, changes, csrfToken) {
  return sendJson(new URL(`${id}/`, new URL(rulesUrl, window.location.href)), "PATCH", changes, csrfToken);
}

// Django's CSRF check wants the token as a header on every write with the session cookie.
function sendJson(url, method, body, csrfToken) {
  return requestJson(url, {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken },
    body: JSON.stringify(body),
  });
}
