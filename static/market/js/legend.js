// The crosshair legend over the chart: symbol, timeframe and the OHLCV of one bar (the hovered one,
// or the newest). Plain DOM writes into the fields the template provides (data-legend="...").

import { formatBarTime, formatChange, formatPrice, formatVolume } from "cryptostock/format";

const VALUE_FIELDS = ["open", "high", "low", "close", "change", "volume", "time"];

export class Legend {
  constructor(element) {
    this.element = element;
    this.fields = Object.fromEntries(
      [...element.querySelectorAll("[data-legend]")].map((field) => [field.dataset.legend, field]),
    );
  }

  /**
   * @param {{symbol: string, exchange: string, timeframe: string}} series
   * @param {object|null} bar the bar to show, or null for none
   * @param {object|null} previous the bar before it (its close is the change's reference)
   * @param {number} precision price decimals
   */
  render(series, bar, previous, precision) {
    this.fields.symbol.textContent = series.symbol;
    this.fields.meta.textContent = [series.exchange, series.timeframe].filter(Boolean).join(" · ");
    if (!bar) {
      for (const name of VALUE_FIELDS) {
        this.fields[name].textContent = name === "time" ? "" : "—";
      }
      delete this.element.dataset.direction;
      return;
    }
    const reference = previous ? previous.close : bar.open;
    this.fields.open.textContent = formatPrice(bar.open, precision);
    this.fields.high.textContent = formatPrice(bar.high, precision);
    this.fields.low.textContent = formatPrice(bar.low, precision);
    this.fields.close.textContent = formatPrice(bar.close, precision);
    this.fields.change.textContent = formatChange(reference, bar.close);
    this.fields.volume.textContent = formatVolume(bar.volume);
    const forming = bar.final === false ? " · forming" : "";
    this.fields.time.textContent = `${formatBarTime(bar.time, series.timeframe)}${forming}`;
    this.element.dataset.direction = bar.close > reference ? "up" : bar.close < reference ? "down" : "flat";
  }
}
