// The chart itself: lightweight-charts v5 with candles in the main pane and volume in a pane of its
// own (its own price scale), colours from the page's CSS tokens, axis times in local time.

import {
  CandlestickSeries,
  ColorType,
  CrosshairMode,
  HistogramSeries,
  createChart,
} from "lightweight-charts";
import { localTimeFormatters } from "cryptostock/format";

const VOLUME_PANE = 1;
const VOLUME_PANE_SHARE = 0.22; // of the chart's height
const KEY_SCROLL_BARS = 10;
const KEY_ZOOM = 1.25; // "-" shows 25% more bars, "+" 20% fewer
const MIN_VISIBLE_BARS = 10;

function readColors() {
  const style = getComputedStyle(document.documentElement);
  const token = (name) => style.getPropertyValue(name).trim();
  return {
    background: token("--chart-bg"),
    text: token("--chart-text"),
    grid: token("--chart-grid"),
    border: token("--chart-border"),
    crosshair: token("--chart-crosshair"),
    crosshairLabel: token("--chart-crosshair-label"),
    up: token("--chart-up"),
    down: token("--chart-down"),
    upVolume: token("--chart-up-volume"),
    downVolume: token("--chart-down-volume"),
  };
}

export class ChartView {
  /**
   * @param {HTMLElement} container
   * @param {{onVisibleRange: Function, onCrosshair: Function}} handlers
   *   onVisibleRange({from, to}) with logical indices; onCrosshair(time or null).
   */
  constructor(container, { onVisibleRange, onCrosshair }) {
    this.container = container;
    this.colors = readColors();
    this.chart = createChart(container, {
      autoSize: true,
      layout: {
        background: { type: ColorType.Solid, color: this.colors.background },
        textColor: this.colors.text,
        fontFamily: getComputedStyle(document.body).fontFamily,
        fontSize: 11,
        attributionLogo: true, // the link to tradingview.com that the library's licence terms ask for
        panes: { separatorColor: this.colors.border, separatorHoverColor: this.colors.grid },
      },
      grid: {
        vertLines: { color: this.colors.grid },
        horzLines: { color: this.colors.grid },
      },
      crosshair: { mode: CrosshairMode.Normal },
      rightPriceScale: { borderColor: this.colors.border, scaleMargins: { top: 0.16, bottom: 0.06 } },
      timeScale: { borderColor: this.colors.border, rightOffset: 6, barSpacing: 8, minBarSpacing: 1 },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      borderVisible: false,
      priceLineVisible: true,
    });
    this.volume = this.chart.addSeries(
      HistogramSeries,
      { priceFormat: { type: "volume" }, priceLineVisible: false, lastValueVisible: true },
      VOLUME_PANE,
    );
    const [pricePane, volumePane] = this.chart.panes();
    pricePane.setStretchFactor(1 - VOLUME_PANE_SHARE);
    volumePane.setStretchFactor(VOLUME_PANE_SHARE);
    this.volume.priceScale().applyOptions({ scaleMargins: { top: 0.15, bottom: 0 } });
    this.applyColors();

    this.chart.timeScale().subscribeVisibleLogicalRangeChange((range) => {
      if (range) {
        onVisibleRange(range);
      }
    });
    this.chart.subscribeCrosshairMove((param) => onCrosshair(param.time ?? null));
    // The price axis grows with the labels' digits; the legend and buttons keep clear of it.
    this.chart.timeScale().subscribeSizeChange(() => {
      const width = this.chart.priceScale("right").width();
      container.parentElement.style.setProperty("--price-axis-width", `${width}px`);
    });
    container.addEventListener("keydown", (event) => this.onKey(event));
  }

  /** Re-read the colour tokens (after a theme change) and repaint. */
  applyColors() {
    const c = (this.colors = readColors());
    this.chart.applyOptions({
      layout: {
        background: { type: ColorType.Solid, color: c.background },
        textColor: c.text,
        panes: { separatorColor: c.border, separatorHoverColor: c.grid },
      },
      grid: { vertLines: { color: c.grid }, horzLines: { color: c.grid } },
      rightPriceScale: { borderColor: c.border },
      timeScale: { borderColor: c.border },
      crosshair: {
        vertLine: { color: c.crosshair, labelBackgroundColor: c.crosshairLabel },
        horzLine: { color: c.crosshair, labelBackgroundColor: c.crosshairLabel },
      },
    });
    this.candles.applyOptions({
      upColor: c.up,
      downColor: c.down,
      wickUpColor: c.up,
      wickDownColor: c.down,
    });
    if (this.bars) {
      this.volume.setData(this.bars.map((bar) => this.volumePoint(bar)));
    }
  }

  /** Axis formatting for a timeframe: times for intraday bars, dates for daily ones. */
  setTimeframe(timeframe) {
    const { timeFormatter, tickMarkFormatter } = localTimeFormatters(timeframe);
    this.chart.applyOptions({
      localization: { timeFormatter },
      timeScale: { timeVisible: timeframe !== "1d", secondsVisible: false, tickMarkFormatter },
    });
  }

  setPrecision(precision) {
    this.candles.applyOptions({
      priceFormat: { type: "price", precision, minMove: 10 ** -precision },
    });
  }

  /** Replace all bars. `fit` scrolls to the newest bars (a new view); otherwise the view stays. */
  setBars(bars, { fit }) {
    this.bars = bars;
    this.candles.setData(bars.map(candlePoint));
    this.volume.setData(bars.map((bar) => this.volumePoint(bar)));
    if (fit) {
      this.chart.timeScale().applyOptions({ barSpacing: 8, rightOffset: 6 });
      this.chart.timeScale().scrollToRealTime();
    }
  }

  /** One live bar: kind is BarStore.upsert's answer. */
  applyBar(bar, kind, bars) {
    this.bars = bars;
    if (kind === "append" || kind === "update") {
      this.candles.update(candlePoint(bar));
      this.volume.update(this.volumePoint(bar));
    } else if (kind === "historical") {
      this.candles.update(candlePoint(bar), true);
      this.volume.update(this.volumePoint(bar), true);
    } else if (kind === "insert") {
      this.setBars(bars, { fit: false });
    }
  }

  /** Bars between the left edge of the data and the left edge of the view (negative: blank space). */
  barsBeforeView(range) {
    return this.candles.barsInLogicalRange(range)?.barsBefore ?? 0;
  }

  /** The visible logical range (bar indices), or null before there are bars. */
  visibleRange() {
    return this.chart.timeScale().getVisibleLogicalRange();
  }

  /** Whether the newest bar is off the right edge of the view. */
  isScrolledBack() {
    return this.chart.timeScale().scrollPosition() < -2;
  }

  scrollToLatest() {
    this.chart.timeScale().scrollToRealTime();
  }

  volumePoint(bar) {
    return {
      time: bar.time,
      value: bar.volume,
      color: bar.close >= bar.open ? this.colors.upVolume : this.colors.downVolume,
    };
  }

  onKey(event) {
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      this.moveRange((range) => {
        const step = event.key === "ArrowLeft" ? -KEY_SCROLL_BARS : KEY_SCROLL_BARS;
        return { from: range.from + step, to: range.to + step };
      });
    } else if (event.key === "+" || event.key === "=" || event.key === "-") {
      // Show 25% more (or fewer) bars, keeping the right edge where it is, as the mouse wheel does.
      const factor = event.key === "-" ? KEY_ZOOM : 1 / KEY_ZOOM;
      this.moveRange((range) => {
        const width = Math.max(MIN_VISIBLE_BARS, (range.to - range.from) * factor);
        return { from: range.to - width, to: range.to };
      });
    } else if (event.key === "End") {
      this.chart.timeScale().scrollToRealTime();
    } else {
      return;
    }
    event.preventDefault();
  }

  /**
   * Change the visible range by `change(range)`. The library applies a new range at its next
   * animation frame, so keys pressed faster than that build on the range asked for, not the one
   * still shown (which would swallow all but one of a burst of key presses).
   */
  moveRange(change) {
    const timeScale = this.chart.timeScale();
    const range = this.pendingRange ?? timeScale.getVisibleLogicalRange();
    if (range === null) {
      return;
    }
    this.pendingRange = change(range);
    timeScale.setVisibleLogicalRange(this.pendingRange);
    cancelAnimationFrame(this.pendingFrame);
    this.pendingFrame = requestAnimationFrame(() => {
      this.pendingRange = null;
    });
  }
}

function candlePoint(bar) {
  return { time: bar.time, open: bar.open, high: bar.high, low: bar.low, close: bar.close };
}
