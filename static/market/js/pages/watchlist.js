// The watchlist page: live prices over the market WebSocket (each row's 1m bars), and adding,
// removing and reordering instruments through the watchlist API. The server renders the rows; after
// a change the page swaps in freshly rendered rows (refreshFragments) and follows their instruments.
//
// Test hook: window.cryptostockWatchlist = {connection, updates, liveBars, lastUpdate, instruments}.

import { ApiFormError, announce, apiRequest, refreshFragments } from "cryptostock/pages-api";
import { LiveSocket, showConnection, socketUrl } from "cryptostock/live-socket";
import { sparklinePath, withBar } from "cryptostock/sparkline";

const root = document.querySelector("[data-watchlist]");
const apiUrl = new URL(root.dataset.apiUrl, window.location.href);
const timeframe = root.dataset.timeframe;
const hook = { connection: "connecting", updates: 0, liveBars: 0, lastUpdate: null, instruments: [] };
window.cryptostockWatchlist = hook;

function rows() {
  return [...document.querySelectorAll("[data-fragment=watchlist] tr[data-instrument]")];
}

function rowOf(instrument) {
  return document.querySelector(`[data-fragment=watchlist] tr[data-instrument="${instrument}"]`);
}

function formatPrice(value, decimals) {
  return value.toLocaleString(undefined, { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

function showChange(row, close) {
  const cell = row.querySelector("[data-cell=change]");
  const reference = Number.parseFloat(row.dataset.reference);
  if (!cell || !Number.isFinite(reference) || reference === 0) {
    return;
  }
  const percent = ((close - reference) / reference) * 100;
  const sign = percent > 0 ? "+" : percent < 0 ? "−" : "";
  cell.textContent = `${sign}${Math.abs(percent).toFixed(2)}%`;
  cell.classList.toggle("up", percent > 0);
  cell.classList.toggle("down", percent < 0);
  row.querySelector(".sparkline")?.classList.toggle("down", percent < 0);
}

function showBar(instrument, bar) {
  const row = rowOf(instrument);
  if (!row || !bar) {
    return;
  }
  const lastTime = Number.parseInt(row.dataset.lastTime || "0", 10);
  if (bar.time < lastTime) {
    return; // a correction of an older bar: the row shows the newest
  }
  row.dataset.lastTime = String(bar.time);
  const decimals = Number.parseInt(row.dataset.decimals || "2", 10);
  const last = row.querySelector("[data-cell=last]");
  const previous = last.textContent;
  last.textContent = formatPrice(bar.close, decimals);
  if (previous !== last.textContent) {
    last.classList.remove("flash");
    void last.offsetWidth; // restart the highlight animation
    last.classList.add("flash");
  }
  showChange(row, bar.close);
  let points = [];
  try {
    points = JSON.parse(row.dataset.spark || "[]");
  } catch {
    points = [];
  }
  points = withBar(points, bar.time, bar.close);
  row.dataset.spark = JSON.stringify(points);
  row.querySelector("[data-cell=spark]")?.setAttribute("d", sparklinePath(points));
  hook.updates += 1;
  hook.lastUpdate = { instrument, time: bar.time, close: bar.close, shown: last.textContent };
}

const feed = new LiveSocket(socketUrl(root.dataset.wsPath));
feed.addEventListener("status", (event) => {
  hook.connection = event.detail.state;
  showConnection(root.querySelector("[data-connection]"), event.detail.state);
});
feed.addEventListener("snapshot", (event) => {
  const { instrument, bars } = event.detail;
  if (bars.length > 0) {
    showBar(instrument, bars[bars.length - 1]);
  }
});
feed.addEventListener("bar", (event) => {
  hook.liveBars += 1;
  showBar(event.detail.instrument, event.detail.bar);
});

function followRows() {
  hook.instruments = rows().map((row) => Number.parseInt(row.dataset.instrument, 10));
  feed.followSeries(hook.instruments.map((instrument) => ({ instrument, timeframe })));
}

// --- Changing the list -----------------------------------------------------------------------

async function change(action, successMessage) {
  try {
    await action();
    // The add form's choices leave out what is on the list: it is re-rendered with the rows.
    await refreshFragments(["watchlist", "watchlist-add"]);
    followRows();
    announce(successMessage);
  } catch (error) {
    announce(error instanceof ApiFormError ? error.message : "Something went wrong; please try again.", { tone: "error" });
  }
}

function showFieldError(form, name, message) {
  const error = form.querySelector(`[data-error-for="${name}"]`);
  const input = form.elements[name];
  if (error) {
    error.textContent = message;
    error.hidden = !message;
  }
  if (input) {
    input.toggleAttribute("aria-invalid", Boolean(message));
  }
}

root.addEventListener("submit", async (event) => {
  const form = event.target.closest("[data-watchlist-add]");
  if (!form) {
    return;
  }
  event.preventDefault();
  const select = form.elements.instrument;
  const instrument = Number.parseInt(select.value, 10);
  if (!Number.isInteger(instrument)) {
    showFieldError(form, "instrument", "Choose an instrument.");
    return;
  }
  showFieldError(form, "instrument", "");
  const label = select.selectedOptions[0]?.textContent ?? "The instrument";
  try {
    await apiRequest(apiUrl, { method: "POST", body: { instrument } });
  } catch (error) {
    showFieldError(form, "instrument", error.fields?.instrument?.[0] ?? error.message);
    return;
  }
  await change(async () => {}, `${label} added to the watchlist.`);
});

root.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-remove], button[data-move]");
  if (!button) {
    return;
  }
  const row = button.closest("tr[data-instrument]");
  const instrument = Number.parseInt(row.dataset.instrument, 10);
  const symbol = row.dataset.symbol;
  if (button.hasAttribute("data-remove")) {
    await change(
      () => apiRequest(new URL(`${instrument}/`, apiUrl), { method: "DELETE" }),
      `${symbol} removed from the watchlist.`,
    );
    // The row and its buttons are gone: keep the keyboard in the same place on the page.
    document.getElementById("watchlist-heading")?.focus();
    return;
  }
  const order = rows().map((item) => Number.parseInt(item.dataset.instrument, 10));
  const index = order.indexOf(instrument);
  const target = button.dataset.move === "up" ? index - 1 : index + 1;
  if (target < 0 || target >= order.length) {
    return;
  }
  [order[index], order[target]] = [order[target], order[index]];
  await change(
    () => apiRequest(new URL("reorder/", apiUrl), { method: "POST", body: { instruments: order } }),
    `${symbol} moved ${button.dataset.move}.`,
  );
  // Keep the keyboard where it was: on the same button of the moved row.
  rowOf(instrument)?.querySelector(`button[data-move="${button.dataset.move}"]:not([disabled])`)?.focus();
});

// A collector's state changes are pushed over the WebSocket; its row states (which also age into
// "stale" when a collector falls silent, which nothing pushes) are re-read from the server then,
// and now and then.
const COLLECTOR_REFRESH_MS = 60_000;

async function refreshCollectorStates() {
  if (document.visibilityState !== "visible") {
    return;
  }
  try {
    const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const row of rows()) {
      const state = fresh.querySelector(`tr[data-instrument="${row.dataset.instrument}"] [data-testid=collector-state]`);
      const current = row.querySelector("[data-testid=collector-state]");
      if (state && current) {
        current.replaceWith(document.importNode(state, true));
      }
    }
  } catch {
    // The next round tries again; the connection status already says when the server is away.
  }
}

followRows();
feed.subscribe({ channel: "collectors" });
feed.addEventListener("collector", () => refreshCollectorStates());
feed.start();
setInterval(refreshCollectorStates, COLLECTOR_REFRESH_MS);
