// Price alerts on the chart: the user's active price-level rules as horizontal lines, and a new one
// created from the chart. Right-click on the price pane (or the "Alert" button, which starts at the
// last close) places a dashed line and opens a small form; submitting it POSTs the rule to the
// alerts API with the session cookie and Django's CSRF token, and the line stays as a solid one.
//
// A rule's line can be moved: dragged with the mouse (TradingView-style), or from the keyboard in the
// "Alert lines" panel that Tab reaches from the chart. On release (or Enter) the new level is PATCHed;
// if the server refuses, the line goes back to where it was and a notice says why.

import { LineStyle } from "lightweight-charts";
import { ApiError, createAlertRule, fetchAlertRules, updateAlertRule } from "cryptostock/api";
import { formatPrice } from "cryptostock/format";
import { THEME_EVENT } from "cryptostock/theme";

const LEVEL_CONDITIONS = new Set(["crossing", "crossing_up", "crossing_down", "greater_than", "less_than"]);
// How close (CSS pixels) to a line the pointer must be to grab it.
const GRAB_PX = 6;

export class ChartAlerts extends EventTarget {
  /**
   * @param {HTMLElement} root the chart app
   * @param {object} chartView the ChartView
   * @param {{rulesUrl: string, view: Function, lastClose: Function}} options
   */
  constructor(root, chartView, { rulesUrl, view, lastClose }) {
    super();
    this.chartView = chartView;
    this.rulesUrl = rulesUrl;
    this.view = view;
    this.lastClose = lastClose;
    this.button = root.querySelector("[data-alert-button]");
    this.dialog = root.querySelector("[data-alert-dialog]");
    this.form = this.dialog?.querySelector("form") ?? null;
    this.formError = this.dialog?.querySelector("[data-alert-error]") ?? null;
    this.panel = root.querySelector("[data-alert-lines]");
    this.placed = []; // {rule, line, input}: the rules drawn on the chart
    this.draft = null;
    this.drag = null; // {placed, pointerId, scroll, scale} while a line is dragged
    this.created = 0;
    this.moved = 0;
    this.moveFailures = 0;
    this.generation = 0;
    this.precision = 2;
    if (this.form) {
      this.bind();
    }
    document.addEventListener(THEME_EVENT, () => {
      for (const line of [...this.placed.map((placed) => placed.line), this.draft].filter(Boolean)) {
        line.applyOptions({ color: accentColor() });
      }
    });
  }

  /** Whether this page may create alerts (the template renders the form for signed-in users only). */
  get enabled() {
    return this.form !== null;
  }

  bind() {
    // Without bars there is no close to start from: the form opens with the price left to type.
    this.button.addEventListener("click", () => this.open(this.lastClose()));
    this.chartView.container.addEventListener("contextmenu", (event) => {
      const price = this.priceAt(event);
      if (price !== null) {
        event.preventDefault();
        this.open(price);
      }
    });
    this.form.elements.namedItem("level").addEventListener("input", (event) => {
      const price = Number(event.target.value);
      if (this.draft && Number.isFinite(price) && event.target.value !== "") {
        this.draft.applyOptions({ price, lineVisible: true, axisLabelVisible: true });
      }
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.dialog.querySelector("[data-dialog-cancel]").addEventListener("click", () => this.dialog.close());
    this.dialog.addEventListener("close", () => this.dropDraft());
    this.bindDragging();
  }

  // --- Moving a rule's line ----------------------------------------------------------------------

  bindDragging() {
    const container = this.chartView.container;
    // Capture phase: the chart's own handlers (panning) must not see a press that grabs a line;
    // cancelling pointerdown also keeps the browser from sending them the mouse events after it.
    container.addEventListener("pointerdown", (event) => this.startDrag(event), { capture: true });
    container.addEventListener("pointermove", (event) => this.onPointerMove(event), { capture: true });
    container.addEventListener("pointerup", (event) => this.endDrag(event), { capture: true });
    container.addEventListener("pointercancel", () => this.cancelDrag());
    container.addEventListener("lostpointercapture", () => this.cancelDrag());
    // On the document: pressing on a line does not move the focus to the chart.
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.drag) {
        event.stopPropagation();
        this.cancelDrag();
      }
    });
  }

  /** The placed rule whose line is under the pointer (the nearest within GRAB_PX), or null. */
  lineAt(event) {
    const y = event.clientY - this.chartView.container.getBoundingClientRect().top;
    if (y < 0 || y > this.chartView.chart.panes()[0].getHeight()) {
      return null;
    }
    let nearest = null;
    let distance = GRAB_PX;
    for (const placed of this.placed) {
      const at = this.chartView.candles.priceToCoordinate(placed.rule.level);
      if (at !== null && Math.abs(at - y) <= distance) {
        nearest = placed;
        distance = Math.abs(at - y);
      }
    }
    return nearest;
  }

  startDrag(event) {
    const placed = event.button === 0 && !this.drag ? this.lineAt(event) : null;
    if (placed === null) {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    const chart = this.chartView.chart;
    const { handleScroll, handleScale } = chart.options();
    // Touch input does not honour the cancelled pointerdown: the chart must not scroll meanwhile.
    chart.applyOptions({ handleScroll: false, handleScale: false });
    this.drag = { placed, pointerId: event.pointerId, scroll: handleScroll, scale: handleScale };
    this.chartView.container.setPointerCapture(event.pointerId);
    this.chartView.container.classList.add("alert-line-dragging");
    this.dispatchEvent(new CustomEvent("state"));
  }

  onPointerMove(event) {
    if (!this.drag) {
      this.chartView.container.classList.toggle("alert-line-hover", this.lineAt(event) !== null);
      return;
    }
    event.stopPropagation();
    const price = this.priceAt(event, { clamp: true });
    if (price !== null && price > 0) {
      this.showLevel(this.drag.placed, this.round(price));
    }
  }

  endDrag(event) {
    if (!this.drag || event.pointerId !== this.drag.pointerId) {
      return;
    }
    event.stopPropagation();
    const { placed } = this.drag;
    this.finishDrag();
    this.commit(placed);
  }

  /** Escape, or the pointer was taken away: the line goes back. */
  cancelDrag() {
    if (this.drag) {
      const { placed } = this.drag;
      this.finishDrag();
      this.showLevel(placed, placed.rule.level);
    }
  }

  finishDrag() {
    const { pointerId, scroll, scale } = this.drag;
    this.drag = null;
    this.chartView.chart.applyOptions({ handleScroll: scroll, handleScale: scale });
    const container = this.chartView.container;
    container.classList.remove("alert-line-dragging");
    if (container.hasPointerCapture(pointerId)) {
      container.releasePointerCapture(pointerId);
    }
    this.dispatchEvent(new CustomEvent("state"));
  }

  /** Where the line is drawn (and the keyboard field says, unless it is what typed it), not yet stored. */
  showLevel(placed, level, { typed = false } = {}) {
    placed.shown = level;
    placed.line.applyOptions({ price: level });
    if (placed.input && !typed) {
      placed.input.value = String(level);
    }
    this.dispatchEvent(new CustomEvent("state"));
  }

  /** Store the level the line shows; on failure put the line back and say why. */
  async commit(placed) {
    const from = placed.rule.level;
    const level = placed.shown;
    if (level === from) {
      return;
    }
    const token = this.form.elements.namedItem("csrfmiddlewaretoken").value;
    try {
      const rule = await updateAlertRule(this.rulesUrl, placed.rule.id, { level }, token);
      this.moved += 1;
      this.notice(`Alert moved: ${rule.description}`);
      if (this.placed.includes(placed)) {
        placed.rule = rule;
        this.showLevel(placed, rule.level);
        placed.label.textContent = controlLabel(rule);
      }
    } catch (error) {
      this.moveFailures += 1;
      if (this.placed.includes(placed)) {
        this.showLevel(placed, from);
      }
      this.notice(`The alert stays at ${formatPrice(from, this.precision)}: ${describeError(error)}`);
    } finally {
      this.dispatchEvent(new CustomEvent("state"));
    }
  }

  round(price) {
    return Number(price.toFixed(this.precision));
  }

  notice(message) {
    this.dispatchEvent(new CustomEvent("notice", { detail: { message } }));
  }

  /** The panel row that moves one line from the keyboard: a price field, Enter stores, Escape reverts. */
  renderControl(placed) {
    const item = document.createElement("li");
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.id = `alert-line-${placed.rule.id}`;
    input.type = "number";
    input.step = String(10 ** -this.precision);
    input.min = input.step;
    input.value = String(placed.rule.level);
    input.dataset.testid = "alert-line-level";
    label.htmlFor = input.id;
    label.textContent = controlLabel(placed.rule);
    input.addEventListener("input", () => {
      const level = Number(input.value);
      if (input.value !== "" && Number.isFinite(level) && level > 0) {
        this.showLevel(placed, level, { typed: true });
      }
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.commit(placed);
      } else if (event.key === "Escape") {
        event.preventDefault();
        this.showLevel(placed, placed.rule.level);
      }
    });
    // Leaving the field without Enter keeps what is stored.
    input.addEventListener("blur", () => this.showLevel(placed, placed.rule.level));
    item.append(label, input);
    this.panel.querySelector("[data-alert-lines-list]").append(item);
    Object.assign(placed, { input, label });
  }

  renderPanel() {
    this.panel.querySelector("[data-alert-lines-list]").replaceChildren();
    this.placed.forEach((placed) => this.renderControl(placed));
    this.panel.hidden = this.placed.length === 0;
  }

  /**
   * The price under the pointer, if it is over the price pane (not volume or an indicator pane);
   * with `clamp`, the price at the pane's edge when the pointer is beyond it (a line being dragged).
   */
  priceAt(event, { clamp = false } = {}) {
    const bounds = this.chartView.container.getBoundingClientRect();
    const height = this.chartView.chart.panes()[0].getHeight();
    let y = event.clientY - bounds.top;
    if (clamp) {
      y = Math.min(Math.max(y, 0), height);
    } else if (y < 0 || y > height) {
      return null;
    }
    const price = this.chartView.candles.coordinateToPrice(y);
    return price === null || !Number.isFinite(price) ? null : price;
  }

  setPrecision(precision) {
    this.precision = precision;
  }

  /** Open the form at `price` (null: no price yet) with a draft line there. */
  open(price) {
    const rounded = price === null ? null : Number(price.toFixed(this.precision));
    this.dropDraft();
    this.draft = this.chartView.candles.createPriceLine({
      price: rounded ?? 0,
      color: accentColor(),
      lineWidth: 1,
      lineStyle: LineStyle.Dashed,
      axisLabelVisible: rounded !== null,
      lineVisible: rounded !== null,
      title: "New alert",
    });
    const close = this.lastClose();
    this.form.elements.namedItem("level").value = rounded === null ? "" : String(rounded);
    this.form.elements.namedItem("level").step = String(10 ** -this.precision);
    this.form.elements.namedItem("condition").value =
      close === null || rounded === null ? "crossing" : rounded >= close ? "crossing_up" : "crossing_down";
    this.form.elements.namedItem("name").value = "";
    this.dialog.querySelector("[data-alert-context]").textContent = this.describeView(close);
    this.showError(null);
    this.dialog.showModal();
    this.form.elements.namedItem("level").focus();
    this.dispatchEvent(new CustomEvent("state"));
  }

  describeView(close) {
    const { symbol, timeframe } = this.view();
    const last = close === null ? "" : `, last close ${formatPrice(close, this.precision)}`;
    return `${symbol} · ${timeframe} bars${last}`;
  }

  dropDraft() {
    if (this.draft) {
      this.chartView.candles.removePriceLine(this.draft);
      this.draft = null;
      this.dispatchEvent(new CustomEvent("state"));
    }
  }

  async submit() {
    const elements = this.form.elements;
    const level = Number(elements.namedItem("level").value);
    if (elements.namedItem("level").value === "" || !Number.isFinite(level)) {
      this.showError("Enter the price to watch.");
      return;
    }
    const { instrument, timeframe } = this.view();
    const rule = {
      instrument,
      timeframe,
      condition: elements.namedItem("condition").value,
      source: { indicator: "close" },
      level,
      frequency: elements.namedItem("frequency").value,
      name: elements.namedItem("name").value.trim(),
    };
    const submit = this.form.querySelector("[type=submit]");
    submit.disabled = true;
    try {
      const created = await createAlertRule(this.rulesUrl, rule, elements.namedItem("csrfmiddlewaretoken").value);
      this.created += 1;
      this.dialog.close();
      this.drawRule(created);
      this.notice(`Alert created: ${created.description}`);
      this.dispatchEvent(new CustomEvent("state"));
    } catch (error) {
      this.showError(describeError(error));
    } finally {
      submit.disabled = false;
    }
  }

  showError(message) {
    this.formError.hidden = message === null;
    this.formError.textContent = message ?? "";
  }

  /** Draw the user's active price-level rules of the current instrument (a new view). */
  async loadRules() {
    const generation = ++this.generation;
    this.cancelDrag();
    for (const placed of this.placed) {
      this.chartView.candles.removePriceLine(placed.line);
    }
    this.placed = [];
    if (!this.enabled) {
      return;
    }
    this.renderPanel();
    try {
      const rules = await fetchAlertRules(this.rulesUrl, { instrument: this.view().instrument });
      if (generation === this.generation) {
        rules.filter(isPriceLevelRule).forEach((rule) => this.drawRule(rule));
        this.dispatchEvent(new CustomEvent("state"));
      }
    } catch (error) {
      console.warn("could not load alert rules", error);
    }
  }

  drawRule(rule) {
    const line = this.chartView.candles.createPriceLine({
      price: rule.level,
      color: accentColor(),
      lineWidth: 1,
      lineStyle: LineStyle.Solid,
      axisLabelVisible: true,
      title: rule.name || "Alert",
    });
    this.placed.push({ rule, line, shown: rule.level, input: null, label: null });
    this.renderPanel();
  }

  /** Each line: its rule, the stored and the shown level, and where it is drawn (CSS pixels from the top). */
  levels() {
    return this.placed.map(({ rule, shown }) => ({
      id: rule.id,
      level: rule.level,
      shown,
      y: this.chartView.candles.priceToCoordinate(shown),
    }));
  }

  state() {
    return {
      alertLines: this.placed.length,
      alertsCreated: this.created,
      alertsMoved: this.moved,
      alertMoveFailures: this.moveFailures,
      alertDraft: this.draft !== null,
      alertDragging: this.drag !== null,
    };
  }
}

function isPriceLevelRule(rule) {
  const source = rule.source?.indicator ?? "close";
  return LEVEL_CONDITIONS.has(rule.condition) && rule.level !== null && rule.target === null && source === "close";
}

function controlLabel(rule) {
  return `${rule.name || "Alert"}: ${rule.description}`;
}

function accentColor() {
  return getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#6b9bff";
}

function describeError(error) {
  if (!(error instanceof ApiError)) {
    return String(error);
  }
  const fields = Object.entries(error.fields ?? {}).map(
    ([field, messages]) => `${field}: ${[].concat(messages).join(" ")}`,
  );
  return fields.length > 0 ? fields.join("; ") : error.message;
}
