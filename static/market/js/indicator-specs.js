// Indicators as the chart page chooses them: which catalogue entry, with which parameters, under
// which API key; how they read in the URL and in the legend. Pure functions, no DOM.
//
// The catalogue (GET /api/v1/indicators/) gives every indicator's parameters with default and
// bounds; a chosen indicator keeps all its parameters resolved, and writes only those that differ
// from the defaults (the URL stays short, and the live feed's values apply when nothing differs).

// Outputs drawn for an indicator; the others (Bollinger bandwidth and %B) live on another scale.
const HIDDEN_OUTPUTS = { bbands: new Set(["bandwidth", "percent_b"]) };
// The API's key syntax: name@label, label at most 32 of [A-Za-z0-9_-].
const KEY_PATTERN = /^[a-z]+(@[A-Za-z0-9_-]{1,32})?$/;

/** The catalogue as a Map name -> definition. */
export function catalogueByName(indicators) {
  return new Map(indicators.map((definition) => [definition.name, definition]));
}

export function defaultParams(definition) {
  return Object.fromEntries(definition.params.map((param) => [param.name, param.default]));
}

/**
 * One parameter's raw value (a string from a form or the URL) checked against the catalogue.
 * Returns {value} or {error} with a message that names the bounds.
 */
export function parseParam(param, raw) {
  const text = String(raw).trim();
  if (param.type === "choice") {
    return param.choices.includes(text) ? { value: text } : { error: `one of ${param.choices.join(", ")}` };
  }
  const value = Number(text);
  if (text === "" || !Number.isFinite(value)) {
    return { error: "a number" };
  }
  if (param.type === "int" && !Number.isInteger(value)) {
    return { error: "a whole number" };
  }
  const low = param.min ?? -Infinity;
  const high = param.max ?? Infinity;
  if (value < low || value > high) {
    return { error: `between ${low} and ${high}` };
  }
  return { value };
}

/**
 * Resolve raw parameters (name -> string) against a definition: defaults for the missing ones.
 * Returns {params, errors}; errors maps a parameter name to what it must be.
 */
export function resolveParams(definition, raw) {
  const params = defaultParams(definition);
  const errors = {};
  for (const param of definition.params) {
    if (raw[param.name] === undefined || raw[param.name] === "") {
      continue;
    }
    const parsed = parseParam(param, raw[param.name]);
    if (parsed.error) {
      errors[param.name] = `${param.name} must be ${parsed.error}`;
    } else {
      params[param.name] = parsed.value;
    }
  }
  return { params, errors };
}

/** Parameters that differ from the defaults (what the URL and the API query carry). */
export function changedParams(definition, params) {
  return Object.fromEntries(
    definition.params.filter((param) => params[param.name] !== param.default).map((p) => [p.name, params[p.name]]),
  );
}

export function usesDefaults(definition, params) {
  return Object.keys(changedParams(definition, params)).length === 0;
}

/**
 * API keys for a list of chosen indicators: the name for the first of each, name@2, name@3 for
 * repeats. The same list always gets the same keys (a bookmark reloads into the same keys).
 */
export function assignKeys(chosen) {
  const seen = new Map();
  return chosen.map((item) => {
    const count = (seen.get(item.name) ?? 0) + 1;
    seen.set(item.name, count);
    const key = count === 1 ? item.name : `${item.name}@${count}`;
    return { ...item, key };
  });
}

/** `names` and `params` query values of /api/v1/instruments/{id}/indicators/. */
export function indicatorQuery(chosen, catalogue) {
  const names = [];
  const params = [];
  for (const item of chosen) {
    if (!KEY_PATTERN.test(item.key)) {
      continue;
    }
    names.push(item.key);
    for (const [name, value] of Object.entries(changedParams(catalogue.get(item.name), item.params))) {
      params.push(`${item.key}.${name}=${value}`);
    }
  }
  return { names: names.join(","), params: params.join(",") };
}

/** `ema:length=50,source=hl2` (or plain `rsi` with the defaults): one indicator in the URL. */
export function formatIndicatorParam(definition, params) {
  const changed = Object.entries(changedParams(definition, params));
  if (changed.length === 0) {
    return definition.name;
  }
  return `${definition.name}:${changed.map(([name, value]) => `${name}=${value}`).join(",")}`;
}

/**
 * The URL's `ind` values back into chosen indicators; unknown names and bad parameters are dropped
 * with a message each (a shared link from an older version must still open).
 */
export function parseIndicatorParams(values, catalogue) {
  const chosen = [];
  const problems = [];
  for (const value of values) {
    const [name, rest = ""] = value.split(":", 2);
    const definition = catalogue.get(name);
    if (!definition) {
      problems.push(`unknown indicator “${name}”`);
      continue;
    }
    const raw = Object.fromEntries(
      rest
        .split(",")
        .filter(Boolean)
        .map((pair) => pair.split("=", 2)),
    );
    const { params, errors } = resolveParams(definition, raw);
    problems.push(...Object.values(errors).map((message) => `${name}: ${message}`));
    chosen.push({ name, params });
  }
  return { chosen, problems };
}

/** The outputs an indicator draws, in catalogue order. */
export function drawnOutputs(definition) {
  const hidden = HIDDEN_OUTPUTS[definition.name] ?? new Set();
  return definition.outputs.filter((output) => !hidden.has(output.name));
}

/** "RSI 14", "EMA 50 hl2", "BBANDS 20 2.5 2": the name and the values that define it. */
export function indicatorLabel(definition, params) {
  // Numbers always (they define it); a choice (source, moving average, anchor) only when not its default.
  const shown = definition.params
    .filter((param) => param.type !== "choice" || params[param.name] !== param.default)
    .map((param) => String(params[param.name]));
  return [definition.name.toUpperCase(), ...shown].join(" ");
}
