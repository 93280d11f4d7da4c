// One chosen indicator drawn on the chart: a line per output, over the candles (overlay) or in a
// pane of its own below the volume, with its fixed range and reference levels from the catalogue.
// Holds the indicator's values by bar time so that REST pages, live values and refetches merge.

import { HistogramSeries, LineSeries, LineStyle } from "lightweight-charts";
import { drawnOutputs } from "cryptostock/indicator-specs";

// Of the chart's height, relative to the price pane (0.78) and the volume pane (0.22).
const INDICATOR_PANE_SHARE = 0.3;
const PRICE_UNIT_PANES = new Set(["macd", "atr"]);
// Mid-saturation colours that keep at least 3:1 against both chart backgrounds.
const PALETTE = ["#e8a317", "#8b6cf0", "#1f9fd1", "#d9587a", "#3aa76d", "#c7782a", "#6a83d8", "#b15ad1"];

export function paletteColor(index) {
  return PALETTE[index % PALETTE.length];
}

export class IndicatorPlot {
  /**
   * @param {object} chart the lightweight-charts chart
   * @param {object} definition the catalogue entry
   * @param {{params: object, colorIndex: number}} chosen its parameters, and its first palette colour
   */
  constructor(chart, definition, chosen) {
    this.chart = chart;
    this.definition = definition;
    this.params = chosen.params;
    this.values = new Map(); // time -> {output: value or null}
    this.newest = -Infinity;
    this.outputs = drawnOutputs(definition);
    this.overlay = definition.placement === "overlay";
    // Overlays, MACD and ATR are prices (or price differences) and need the instrument's decimals;
    // oscillators read well with two.
    this.inPriceUnits = this.overlay || PRICE_UNIT_PANES.has(definition.name);
    const paneIndex = this.overlay ? 0 : chart.panes().length;
    this.colors = Object.fromEntries(
      this.outputs.map((output, index) => [output.name, paletteColor(chosen.colorIndex + index)]),
    );
    this.series = new Map();
    for (const output of this.outputs) {
      const color = this.colors[output.name];
      const histogram = output.name === "hist";
      const options = {
        color: histogram ? withAlpha(color, 0.6) : color,
        lineWidth: 1.5,
        priceLineVisible: false,
        lastValueVisible: true,
        crosshairMarkerVisible: !histogram,
        title: "",
        ...this.scaleOptions(),
      };
      const series = chart.addSeries(histogram ? HistogramSeries : LineSeries, options, paneIndex);
      this.series.set(output.name, series);
    }
    this.drawLevels();
    if (!this.overlay) {
      this.pane().setStretchFactor(INDICATOR_PANE_SHARE);
    }
  }

  scaleOptions() {
    const options = {};
    if (this.definition.name === "obv") {
      options.priceFormat = { type: "volume" };
    } else if (!this.inPriceUnits) {
      options.priceFormat = { type: "price", precision: 2, minMove: 0.01 };
    }
    const range = this.definition.range;
    if (range) {
      // Oscillators keep their whole range in view, so 30/70 sit at the same height on every chart.
      options.autoscaleInfoProvider = () => ({ priceRange: { minValue: range[0], maxValue: range[1] } });
    }
    return options;
  }

  drawLevels() {
    const first = this.series.values().next().value;
    for (const level of this.definition.levels ?? []) {
      first.createPriceLine({
        price: level,
        color: "rgba(133, 144, 162, 0.7)",
        lineWidth: 1,
        lineStyle: LineStyle.Dashed,
        axisLabelVisible: false,
        title: "",
      });
    }
  }

  /** The pane this indicator draws in (the price pane for overlays). */
  pane() {
    return this.series.values().next().value.getPane();
  }

  paneIndex() {
    return this.pane().paneIndex();
  }

  /** Decimals of this indicator's values for an instrument priced with `precision` decimals. */
  valuePrecision(precision) {
    if (!this.inPriceUnits) {
      return 2;
    }
    // MACD's lines and ATR are small differences of prices: a digit more than the prices themselves.
    return this.overlay ? precision : Math.min(precision + 1, 10);
  }

  setPrecision(precision) {
    if (this.inPriceUnits) {
      const decimals = this.valuePrecision(precision);
      for (const series of this.series.values()) {
        series.applyOptions({ priceFormat: { type: "price", precision: decimals, minMove: 10 ** -decimals } });
      }
    }
  }

  /** Merge an API answer's columns (time[] and outputs {name: values[]}) into the known values. */
  mergeColumns(times, outputs) {
    times.forEach((time, index) => {
      const point = {};
      for (const [name, values] of Object.entries(outputs)) {
        point[name] = values[index];
      }
      this.values.set(time, point);
      this.newest = Math.max(this.newest, time);
    });
  }

  /** Redraw every series from the known values. */
  redraw() {
    const times = [...this.values.keys()].sort((a, b) => a - b);
    for (const [name, series] of this.series) {
      series.setData(times.map((time) => toPoint(time, this.values.get(time)[name])));
    }
  }

  /** One bar's values (a live final bar): appended in place when newest, otherwise a redraw. */
  applyValues(time, point) {
    const newest = this.newest;
    this.values.set(time, point);
    this.newest = Math.max(newest, time);
    if (time < newest) {
      this.redraw();
      return;
    }
    for (const [name, series] of this.series) {
      series.update(toPoint(time, point[name]));
    }
  }

  /** Values at `time`, or at the newest bar that has any when `time` is null. */
  valuesAt(time) {
    if (time !== null) {
      return this.values.get(time) ?? null;
    }
    const newest = this.newestValueTime();
    return newest === null ? null : this.values.get(newest);
  }

  /** The newest bar time with a value (null before any). */
  newestValueTime() {
    let newest = null;
    for (const [known, point] of this.values) {
      if ((newest === null || known > newest) && Object.values(point).some((v) => v !== null)) {
        newest = known;
      }
    }
    return newest;
  }

  remove() {
    for (const series of this.series.values()) {
      this.chart.removeSeries(series);
    }
    this.series.clear();
  }
}

function withAlpha(hex, alpha) {
  const [r, g, b] = [1, 3, 5].map((start) => Number.parseInt(hex.slice(start, start + 2), 16));
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

function toPoint(time, value) {
  // A null value (warm-up) is whitespace: the time exists, nothing is drawn.
  return value === null || value === undefined || Number.isNaN(value) ? { time } : { time, value };
}
