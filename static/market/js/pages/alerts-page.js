// The alerts page: the rule form (posted to the alerts API, its validation errors shown next to
// the fields), pause/resume and delete, notifications read state, and live alert pushes over the
// market WebSocket. The server renders every list; after a change the page swaps in fresh ones.
//
// Test hook: window.cryptostockAlerts = {connection, created, alerts}.

import { ApiFormError, announce, apiRequest, refreshFragments } from "cryptostock/pages-api";
import { LiveSocket, showConnection, socketUrl } from "cryptostock/live-socket";

const root = document.querySelector("[data-alerts-page]");
const form = root.querySelector("[data-rule-form]");
const rulesUrl = new URL(root.dataset.rulesUrl, window.location.href);
const notificationsUrl = new URL(root.dataset.notificationsUrl, window.location.href);
const hook = { connection: "connecting", created: 0, alerts: 0 };
window.cryptostockAlerts = hook;

// --- The form --------------------------------------------------------------------------------

function selectedFields() {
  const option = form.elements.condition.selectedOptions[0];
  return new Set((option?.dataset.fields ?? "").split(" ").filter(Boolean));
}

/** Show the parameters the chosen condition uses, and the settings of the chosen channels. */
function showRelevantFields() {
  const fields = selectedFields();
  for (const wrapper of form.querySelectorAll("[data-param]")) {
    wrapper.hidden = !fields.has(wrapper.dataset.param);
  }
  // A comparison with a target indicator takes no level.
  const comparesWithTarget = fields.has("target") && form.elements.target_indicator.value !== "";
  form.querySelector("[data-param=level]").hidden = !fields.has("level") || comparesWithTarget;
  form.querySelector("[data-level-hint]").hidden = form.elements.condition.value !== "data_quality";
  const channels = new Set(checkedChannels());
  for (const wrapper of form.querySelectorAll("[data-channel]")) {
    wrapper.hidden = !channels.has(wrapper.dataset.channel);
  }
}

function checkedChannels() {
  return [...form.querySelectorAll("input[name=channels]:checked")].map((input) => input.value);
}

/** "length=20, output=signal" -> {length: 20, output: "signal"}; numbers become numbers. */
export function parseParams(text) {
  const params = {};
  for (const part of text.split(/[,;]/)) {
    const [rawKey, ...rest] = part.split("=");
    const key = rawKey.trim();
    if (!key) {
      continue;
    }
    const raw = rest.join("=").trim();
    const number = Number(raw);
    params[key] = raw !== "" && Number.isFinite(number) ? number : raw;
  }
  return params;
}

function numberOrNull(name) {
  const input = form.elements[name];
  const wrapper = input.closest("[data-param]");
  if ((wrapper && wrapper.hidden) || input.value.trim() === "") {
    return null;
  }
  return Number(input.value);
}

function ruleBody() {
  const fields = selectedFields();
  const body = {
    name: form.elements.name.value.trim(),
    instrument: Number.parseInt(form.elements.instrument.value, 10),
    timeframe: form.elements.timeframe.value,
    condition: form.elements.condition.value,
    frequency: form.elements.frequency.value,
    cooldown_seconds: Number.parseInt(form.elements.cooldown_seconds.value || "0", 10),
    expires_at: form.elements.expires_at.value ? new Date(form.elements.expires_at.value).toISOString() : null,
    active: form.elements.active.checked,
    channels: checkedChannels(),
    message: form.elements.message.value,
  };
  if (fields.has("source")) {
    body.source = { indicator: form.elements.source_indicator.value, ...parseParams(form.elements.source_params.value) };
  }
  if (fields.has("target") && form.elements.target_indicator.value) {
    body.target = { indicator: form.elements.target_indicator.value, ...parseParams(form.elements.target_params.value) };
  }
  for (const name of ["level", "upper", "percent", "bars", "multiplier"]) {
    const value = numberOrNull(name);
    if (fields.has(name) && value !== null) {
      body[name] = value;
    }
  }
  if (fields.has("finding_kinds")) {
    const kinds = [...form.querySelectorAll("input[name=finding_kinds]:checked")].map((input) => input.value);
    if (kinds.length > 0) {
      body.finding_kinds = kinds;
    }
  }
  for (const name of ["webhook_url", "telegram_chat_id", "slack_channel"]) {
    const input = form.elements[name];
    if (!input.closest("[data-channel]").hidden) {
      body[name] = input.value.trim();
    }
  }
  return body;
}

function clearErrors() {
  for (const element of form.querySelectorAll("[data-error-for]")) {
    element.textContent = "";
    element.hidden = true;
  }
  for (const input of form.querySelectorAll("[aria-invalid]")) {
    input.removeAttribute("aria-invalid");
  }
}

/** The API's field errors next to their fields; the first invalid field gets the focus. */
function showErrors(error) {
  let first = null;
  const unplaced = [];
  for (const [name, messages] of Object.entries(error.fields)) {
    const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
    const slot = form.querySelector(`[data-error-for="${name}"]`);
    if (!slot || slot.parentElement.closest("[hidden]")) {
      unplaced.push(`${name.replaceAll("_", " ")}: ${text}`);
      continue;
    }
    slot.textContent = text;
    slot.hidden = false;
    const input = form.querySelector(`[aria-describedby~="err-${name}"]`);
    input?.setAttribute("aria-invalid", "true");
    first ??= input;
  }
  const formError = form.querySelector("[data-form-error]");
  if (unplaced.length > 0 || Object.keys(error.fields).length === 0) {
    formError.textContent = unplaced.length > 0 ? unplaced.join(" ") : error.message;
    formError.hidden = false;
  }
  (first ?? formError).focus?.();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const rule = await apiRequest(rulesUrl, { method: "POST", body: ruleBody() });
    hook.created += 1;
    await refreshFragments(["rules"]);
    form.elements.name.value = "";
    announce(`Rule created: ${rule.name || rule.description}.`);
  } catch (error) {
    if (error instanceof ApiFormError && error.status === 400) {
      showErrors(error);
    } else {
      announce(error.message || "The rule could not be created.", { tone: "error" });
    }
  } finally {
    button.disabled = false;
  }
});

form.addEventListener("change", (event) => {
  if (["condition", "target_indicator", "channels"].includes(event.target.name)) {
    showRelevantFields();
  }
});

// --- Rules, notifications ----------------------------------------------------------------------

async function act(request, fragments, message) {
  try {
    await request();
    await refreshFragments(fragments);
    announce(message);
  } catch (error) {
    announce(error.message || "Something went wrong; please try again.", { tone: "error" });
  }
}

root.addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) {
    return;
  }
  const row = button.closest("[data-rule]");
  if (row && button.hasAttribute("data-toggle-active")) {
    const active = button.dataset.toggleActive === "true";
    await act(
      () => apiRequest(new URL(`${row.dataset.rule}/`, rulesUrl), { method: "PATCH", body: { active } }),
      ["rules"],
      active ? "Rule resumed." : "Rule paused.",
    );
    root.querySelector(`[data-rule="${row.dataset.rule}"] [data-toggle-active]`)?.focus();
  } else if (row && button.hasAttribute("data-delete-rule")) {
    if (!window.confirm("Delete this rule and its firing history?")) {
      return;
    }
    await act(
      () => apiRequest(new URL(`${row.dataset.rule}/`, rulesUrl), { method: "DELETE" }),
      ["rules", "firings"],
      "Rule deleted.",
    );
    // The row and its buttons are gone: keep the keyboard in the same place on the page.
    document.getElementById("rules-heading")?.focus();
  } else if (button.hasAttribute("data-read")) {
    const item = button.closest("[data-notification]");
    await act(
      () => apiRequest(new URL(`${item.dataset.notification}/read/`, notificationsUrl), { method: "POST" }),
      ["notifications"],
      "Marked read.",
    );
  } else if (button.hasAttribute("data-read-all")) {
    await act(
      () => apiRequest(new URL("read-all/", notificationsUrl), { method: "POST", body: {} }),
      ["notifications"],
      "All notifications marked read.",
    );
  }
});

// --- Live alert pushes -------------------------------------------------------------------------

const feed = new LiveSocket(socketUrl(root.dataset.wsPath));
feed.addEventListener("status", (event) => {
  hook.connection = event.detail.state;
  showConnection(root.querySelector("[data-connection]"), event.detail.state);
});
feed.addEventListener("alert", async (event) => {
  hook.alerts += 1;
  announce(`Alert: ${event.detail.message ?? "a rule fired"}`, { tone: "alert" });
  await refreshFragments(["notifications", "firings", "rules"]);
});

showRelevantFields();
feed.start();
