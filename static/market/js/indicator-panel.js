// The chart's indicators: which are chosen (chips in the toolbar; IndicatorDialog adds or edits
// one from the catalogue), their values (REST for history, the WebSocket's final bars for live values), and
// what the legend says of them.
//
// The live feed carries every indicator with its default parameters; one with other parameters is
// refetched from the API (its newest few values) when a bar closes.

import { ApiError, fetchCatalogue, fetchIndicators } from "cryptostock/api";
import { formatPrice, formatVolume } from "cryptostock/format";
import { IndicatorDialog } from "cryptostock/indicator-dialog";
import { IndicatorPlot } from "cryptostock/indicator-plots";
import {
  assignKeys,
  catalogueByName,
  formatIndicatorParam,
  indicatorLabel,
  indicatorQuery,
  parseIndicatorParams,
  usesDefaults,
} from "cryptostock/indicator-specs";

// The API answers at most this many bars per request (API_MAX_BARS' default).
const FETCH_LIMIT = 5000;
// On a bar close, an indicator the live feed does not carry refetches this many newest values.
const LIVE_REFETCH_BARS = 3;

export class IndicatorPanel extends EventTarget {
  /**
   * @param {HTMLElement} root the chart app
   * @param {object} chartView the ChartView
   * @param {{catalogueUrl: string, instrumentsUrl: string, view: Function, store: Function}} options
   *   view() gives the current {instrument, timeframe}; store() the current BarStore.
   */
  constructor(root, chartView, { catalogueUrl, instrumentsUrl, view, store }) {
    super();
    this.chartView = chartView;
    this.urls = { catalogue: catalogueUrl, instruments: instrumentsUrl };
    this.view = view;
    this.store = store;
    this.catalogue = new Map();
    this.plots = [];
    this.unresolved = []; // the URL's indicators while there is no catalogue to read them with
    this.colorIndex = 0;
    this.generation = 0;
    this.liveUpdates = 0;
    this.refetches = 0;
    this.pendingFetches = 0;
    this.error = null;
    this.precision = 2;
    this.addButton = root.querySelector("[data-add-indicator]");
    this.list = root.querySelector("[data-indicator-list]");
    this.legendList = root.querySelector("[data-legend-indicators]");
    this.dialog = new IndicatorDialog(root.querySelector("[data-indicator-dialog]"), {
      onSubmit: (definition, params) => this.applyDialog(definition, params),
    });
    this.editing = null;
    this.addButton.addEventListener("click", () => this.openDialog(null));
  }

  async loadCatalogue() {
    try {
      this.catalogue = catalogueByName(await fetchCatalogue(this.urls.catalogue));
      this.dialog.setCatalogue(this.catalogue);
      this.addButton.disabled = false;
    } catch (error) {
      this.error = `The indicator catalogue could not be loaded: ${error.message}`;
      this.addButton.disabled = true;
      this.addButton.title = this.error;
    }
  }

  // --- What is chosen ---------------------------------------------------------------------------

  /** Replace the chosen indicators by the URL's `ind` values; returns the problems found. */
  choose(urlValues) {
    if (this.catalogue.size === 0) {
      // No catalogue (it failed to load): keep what the URL asks for, so the link is not lost.
      this.unresolved = urlValues;
      return [];
    }
    this.unresolved = [];
    const { chosen, problems } = parseIndicatorParams(urlValues, this.catalogue);
    const wanted = chosen.map((item) => formatIndicatorParam(this.catalogue.get(item.name), item.params));
    if (wanted.join("|") === this.urlValues().join("|")) {
      return problems;
    }
    for (const plot of this.plots) {
      plot.remove();
    }
    this.plots = [];
    this.colorIndex = 0;
    for (const item of chosen) {
      this.addPlot(item.name, item.params);
    }
    this.renderChips();
    return problems;
  }

  /** The chosen indicators as the URL writes them. */
  urlValues() {
    if (this.unresolved.length > 0) {
      return this.unresolved;
    }
    return this.plots.map((plot) => formatIndicatorParam(plot.definition, plot.params));
  }

  addPlot(name, params) {
    const definition = this.catalogue.get(name);
    const plot = new IndicatorPlot(this.chartView.chart, definition, { params, colorIndex: this.colorIndex });
    plot.setPrecision(this.precision);
    this.colorIndex += plot.outputs.length;
    this.plots.push(plot);
    return plot;
  }

  removePlot(plot) {
    plot.remove();
    this.plots = this.plots.filter((known) => known !== plot);
    this.changed();
  }

  changed() {
    this.renderChips();
    this.renderLegend(null);
    this.dispatchEvent(new CustomEvent("change"));
  }

  setPrecision(precision) {
    this.precision = precision;
    for (const plot of this.plots) {
      plot.setPrecision(precision);
    }
  }

  // --- Values -------------------------------------------------------------------------------------

  /** A new view (instrument or timeframe): forget every value; bars come first, then loadAll. */
  reset() {
    this.generation += 1;
    this.liveUpdates = 0;
    this.refetches = 0;
    this.error = null;
    for (const plot of this.plots) {
      plot.values.clear();
      plot.newest = -Infinity;
      plot.redraw();
    }
  }

  /** Values for every loaded bar of `plots` (all by default), in pages the API allows. */
  async loadAll(plots = this.plots) {
    const first = this.store().first;
    if (first === null || plots.length === 0) {
      return;
    }
    await this.fetchInto(plots, { start: first.time }, { pages: true });
  }

  /** Values for a page of older bars, loaded before the bar at `end`. */
  async loadBefore(end, limit) {
    await this.fetchInto(this.plots, { end, limit: Math.min(limit, FETCH_LIMIT) }, { pages: false });
  }

  async fetchInto(plots, range, { pages }) {
    if (plots.length === 0) {
      return;
    }
    const generation = this.generation;
    const { instrument, timeframe } = this.view();
    const keyed = assignKeys(plots.map((plot) => ({ name: plot.definition.name, params: plot.params, plot })));
    const query = indicatorQuery(keyed, this.catalogue);
    let start = range.start;
    this.pendingFetches += 1;
    this.publish();
    try {
      for (;;) {
        const body = await fetchIndicators(this.urls.instruments, {
          instrument,
          timeframe,
          ...query,
          limit: range.limit ?? FETCH_LIMIT,
          start,
          end: range.end,
        });
        if (generation !== this.generation) {
          return;
        }
        for (const item of keyed) {
          const columns = body.indicators[item.key];
          if (columns && this.plots.includes(item.plot)) {
            item.plot.mergeColumns(body.time, columns.outputs);
            item.plot.redraw();
          }
        }
        if (!pages || body.time.length < FETCH_LIMIT) {
          break;
        }
        start = body.time[body.time.length - 1] + 1;
      }
      this.error = null;
    } catch (error) {
      if (generation === this.generation) {
        this.error = error instanceof ApiError ? error.message : String(error);
        this.dispatchEvent(new CustomEvent("notice", { detail: { message: `Indicators: ${this.error}` } }));
      }
    } finally {
      this.pendingFetches -= 1;
      this.renderLegend(null);
      this.publish();
    }
  }

  /** A bar from the WebSocket: final bars bring the live feed's values (default parameters). */
  onBar(message) {
    const bar = message.bar;
    if (!bar.final || this.plots.length === 0) {
      return;
    }
    const live = message.indicators ?? null;
    const refetch = [];
    for (const plot of this.plots) {
      const values = live?.[plot.definition.name];
      if (values && usesDefaults(plot.definition, plot.params)) {
        plot.applyValues(bar.time, pick(values, plot.definition));
        this.liveUpdates += 1;
      } else {
        refetch.push(plot);
      }
    }
    if (refetch.length > 0) {
      this.refetches += 1;
      this.fetchInto(refetch, { limit: LIVE_REFETCH_BARS }, { pages: false });
    }
    this.publish();
  }

  // --- Legend -------------------------------------------------------------------------------------

  /** One line per indicator: its label and each output's value at `time` (null: the newest). */
  renderLegend(time) {
    const rows = this.plots.map((plot) => {
      const row = document.createElement("li");
      const label = document.createElement("span");
      label.className = "legend-indicator-label";
      label.textContent = indicatorLabel(plot.definition, plot.params);
      row.append(label);
      const point = plot.valuesAt(time);
      for (const output of plot.outputs) {
        const value = document.createElement("span");
        value.className = "legend-indicator-value";
        // The line's colour marks the value; the digits keep the text colour (contrast in both themes).
        value.style.setProperty("--swatch", plot.colors[output.name]);
        value.title = output.title;
        value.dataset.output = output.name;
        value.textContent = this.formatValue(plot, point?.[output.name]);
        row.append(value);
      }
      row.dataset.indicator = plot.definition.name;
      return row;
    });
    this.legendList.replaceChildren(...rows);
    this.legendList.hidden = rows.length === 0;
  }

  formatValue(plot, value) {
    if (value === null || value === undefined) {
      return "—";
    }
    if (plot.definition.name === "obv") {
      return formatVolume(value);
    }
    return formatPrice(value, plot.valuePrecision(this.precision));
  }

  // --- Toolbar chips --------------------------------------------------------------------------------

  renderChips() {
    const chips = this.plots.map((plot) => {
      const label = indicatorLabel(plot.definition, plot.params);
      const chip = document.createElement("li");
      chip.className = "chip";
      chip.dataset.indicator = plot.definition.name;
      const swatch = document.createElement("span");
      swatch.className = "chip-swatch";
      swatch.setAttribute("aria-hidden", "true");
      swatch.style.setProperty("background", plot.colors[plot.outputs[0].name]);
      const edit = document.createElement("button");
      edit.type = "button";
      edit.className = "chip-edit";
      edit.textContent = label;
      edit.setAttribute("aria-label", `Edit ${label}`);
      edit.addEventListener("click", () => this.openDialog(plot));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "chip-remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Remove ${label}`);
      remove.addEventListener("click", () => {
        this.removePlot(plot);
        this.addButton.focus();
      });
      chip.append(swatch, edit, remove);
      return chip;
    });
    this.list.replaceChildren(...chips);
  }

  // --- The add/edit dialog ------------------------------------------------------------------------

  openDialog(plot) {
    this.editing = plot;
    if (plot) {
      this.dialog.open({ definition: plot.definition, params: plot.params, editing: true });
    } else {
      this.dialog.open({ definition: null, params: null, editing: false });
    }
  }

  /** The dialog's answer: a new indicator, or new parameters for the one being edited. */
  applyDialog(definition, params) {
    let plot = this.editing;
    if (plot) {
      plot.params = params;
      plot.values.clear();
      plot.newest = -Infinity;
      plot.redraw();
    } else {
      plot = this.addPlot(definition.name, params);
    }
    this.changed();
    this.loadAll([plot]);
  }

  // --- Test hook ------------------------------------------------------------------------------------

  state() {
    return {
      indicators: this.plots.map((plot) => ({
        name: plot.definition.name,
        params: { ...plot.params },
        pane: plot.paneIndex(),
        values: plot.values.size,
        last: plot.valuesAt(null),
        lastTime: plot.newestValueTime(),
      })),
      panes: this.chartView.chart.panes().length,
      indicatorLiveUpdates: this.liveUpdates,
      indicatorRefetches: this.refetches,
      indicatorsLoading: this.pendingFetches > 0,
      indicatorError: this.error,
    };
  }

  publish() {
    this.dispatchEvent(new CustomEvent("state"));
  }
}

/** The live feed's values of one indicator, reduced to the outputs it defines. */
function pick(values, definition) {
  return Object.fromEntries(definition.outputs.map((output) => [output.name, values[output.name] ?? null]));
}
