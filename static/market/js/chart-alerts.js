// Price alerts on the chart: the user's active price-level rules as horizontal lines, and a new one
// created from the chart. Right-click on the price pane (or the "Alert" button, which starts at the
// last close) places a dashed line and opens a small form; submitting it POSTs the rule to the
// alerts API with the session cookie and Django's CSRF token, and the line stays as a solid one.

import { LineStyle } from "lightweight-charts";
import { ApiError, createAlertRule, fetchAlertRules } from "cryptostock/api";
import { formatPrice } from "cryptostock/format";
import { THEME_EVENT } from "cryptostock/theme";

const LEVEL_CONDITIONS = new Set(["crossing", "crossing_up", "crossing_down", "greater_than", "less_than"]);

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
    this.lines = [];
    this.draft = null;
    this.created = 0;
    this.generation = 0;
    this.precision = 2;
    if (this.form) {
      this.bind();
    }
    document.addEventListener(THEME_EVENT, () => {
      for (const line of [...this.lines, this.draft].filter(Boolean)) {
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
  }

  /** The price under the pointer, if it is over the price pane (not volume or an indicator pane). */
  priceAt(event) {
    const bounds = this.chartView.container.getBoundingClientRect();
    const y = event.clientY - bounds.top;
    const pricePane = this.chartView.chart.panes()[0];
    if (y < 0 || y > pricePane.getHeight()) {
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
      this.dispatchEvent(new CustomEvent("notice", { detail: { message: `Alert created: ${created.description}` } }));
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
    for (const line of this.lines) {
      this.chartView.candles.removePriceLine(line);
    }
    this.lines = [];
    if (!this.enabled) {
      return;
    }
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
    this.lines.push(
      this.chartView.candles.createPriceLine({
        price: rule.level,
        color: accentColor(),
        lineWidth: 1,
        lineStyle: LineStyle.Solid,
        axisLabelVisible: true,
        title: rule.name || "Alert",
      }),
    );
  }

  state() {
    return { alertLines: this.lines.length, alertsCreated: this.created, alertDraft: this.draft !== null };
  }
}

function isPriceLevelRule(rule) {
  const source = rule.source?.indicator ?? "close";
  return LEVEL_CONDITIONS.has(rule.condition) && rule.level !== null && rule.target === null && source === "close";
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
