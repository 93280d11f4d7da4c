// The chart page: which series is shown (instrument + timeframe, mirrored in the URL), where its bars
// come from (REST history, WebSocket snapshot and live bars), and what the legend, overlays and
// status badge say. Drawing is ChartView's job; merging bars is BarStore's; indicators are
// IndicatorPanel's and price alerts ChartAlerts'.
//
// Test hook: `window.cryptostock` is kept up to date with the page's state (barsLoaded, lastBar,
// updates, connection, ...) so a browser test can observe candles and live updates without pixels.

import { ApiError, fetchBars, fetchInstrument } from "cryptostock/api";
import { BarStore } from "cryptostock/bars";
import { ChartAlerts } from "cryptostock/chart-alerts";
import { ChartView } from "cryptostock/chart-view";
import { formatPrice, pricePrecision, timeZoneLabel } from "cryptostock/format";
import { IndicatorPanel } from "cryptostock/indicator-panel";
import { InstrumentPicker } from "cryptostock/instrument-picker";
import { Legend } from "cryptostock/legend";
import { LiveSocket, showConnection, socketUrl } from "cryptostock/live-socket";
import { THEME_EVENT, currentTheme } from "cryptostock/theme";
import { readViewFromUrl, writeViewToUrl } from "cryptostock/view-url";

const PAGE_BARS = 1000;
// Start fetching older bars when fewer than this many are left to the left of the view.
const LOAD_OLDER_WHEN_BARS_LEFT = 60;
// After a failed request (or a 429 without Retry-After), wait this long before asking again.
const RETRY_AFTER_MS = 5000;
const NOTICE_FOR_MS = 6000;

class ChartPage {
  constructor(root) {
    this.root = root;
    this.urls = {
      bars: root.dataset.barsUrl,
      instruments: root.dataset.instrumentsUrl,
      catalogue: root.dataset.catalogueUrl,
      alertRules: root.dataset.alertRulesUrl,
      socket: socketUrl(root.dataset.wsPath),
    };
    this.form = root.querySelector("[data-chart-form]");
    this.picker = new InstrumentPicker(
      root.querySelector("#instrument-select"),
      root.querySelector("#instrument-search"),
    );
    this.status = root.querySelector("[data-testid=connection-status]");
    this.legend = new Legend(root.querySelector("[data-testid=legend]"));
    this.chartElement = root.querySelector("[data-chart]");
    this.overlays = {
      loading: root.querySelector("[data-chart-loading]"),
      empty: root.querySelector("[data-chart-empty]"),
      error: root.querySelector("[data-chart-error]"),
    };
    this.historyBadge = root.querySelector("[data-history-status]");
    this.noticeBadge = root.querySelector("[data-live-notice]");
    this.goLive = root.querySelector("[data-go-live]");

    this.view = { instrument: null, timeframe: "1m" };
    this.store = new BarStore();
    this.generation = 0;
    this.abort = null;
    this.drawn = false; // the current view's bars are on the chart
    this.restLoaded = false; // the first REST page of the current view has arrived (or failed)
    this.loadingOlder = false;
    this.historyExhausted = false;
    this.olderRetryAt = 0;
    this.olderRetryTimer = null;
    this.viewRetryTimer = null;
    this.olderError = null;
    this.olderLoads = 0;
    this.updates = 0;
    this.precision = 2;
    this.hoverTime = null;
    this.connection = "connecting";
    this.error = null;
    this.hook = (window.cryptostock = {});
  }

  async start() {
    this.chart = new ChartView(this.chartElement, {
      onVisibleRange: (range) => this.onVisibleRange(range),
      onCrosshair: (time) => {
        this.hoverTime = time;
        this.renderLegend();
      },
    });
    this.indicators = new IndicatorPanel(this.root, this.chart, {
      catalogueUrl: this.urls.catalogue,
      instrumentsUrl: this.urls.instruments,
      view: () => this.view,
      store: () => this.store,
    });
    this.indicators.addEventListener("change", () => {
      writeViewToUrl(this.urlView(), { push: true });
      this.publish();
    });
    this.indicators.addEventListener("state", () => this.publish());
    this.indicators.addEventListener("notice", (event) => this.showNotice(event.detail.message));
    this.alerts = new ChartAlerts(this.root, this.chart, {
      rulesUrl: this.urls.alertRules,
      view: () => ({ ...this.view, symbol: this.instrumentInfo(this.view.instrument).symbol }),
      lastClose: () => this.store.last?.close ?? null,
    });
    this.alerts.addEventListener("state", () => this.publish());
    // Read when asked: the price axis rescales without telling, and a test drags a line where it is now.
    Object.defineProperty(this.hook, "alertLevels", { enumerable: true, get: () => this.alerts.levels() });
    this.alerts.addEventListener("notice", (event) => this.showNotice(event.detail.message));
    const catalogue = this.indicators.loadCatalogue();
    this.feed = new LiveSocket(this.urls.socket);
    this.feed.addEventListener("status", (event) => this.onStatus(event.detail));
    this.feed.addEventListener("snapshot", (event) => this.onSnapshot(event.detail));
    this.feed.addEventListener("bar", (event) => this.onBar(event.detail));
    this.feed.addEventListener("notice", (event) => this.showNotice(event.detail.message));
    this.bindControls();
    this.feed.start();

    if (this.picker.ids().length === 0) {
      await this.picker.loadFromApi(this.urls.instruments);
    }
    if (this.picker.ids().length === 0) {
      this.showNoInstruments();
      return;
    }
    const wanted = readViewFromUrl();
    this.view = { instrument: await this.resolveInstrument(wanted.instrument), timeframe: wanted.timeframe };
    this.syncControls();
    this.loadView();
    await catalogue;
    this.chooseIndicators(wanted.indicators);
    writeViewToUrl(this.urlView(), { push: false });
  }

  /** The view as the URL keeps it: instrument, timeframe and the chosen indicators. */
  urlView() {
    return { ...this.view, indicators: this.indicators.urlValues() };
  }

  /** Show the indicators a URL names; those that cannot be shown are named in a notice. */
  chooseIndicators(urlValues) {
    const problems = this.indicators.choose(urlValues);
    if (problems.length > 0) {
      this.showNotice(`Indicators left out: ${problems.join("; ")}`);
    }
    if (this.restLoaded) {
      this.indicators.loadAll();
    }
    this.renderLegend();
    this.publish();
  }

  bindControls() {
    this.form.addEventListener("submit", (event) => event.preventDefault());
    this.picker.addEventListener("change", (event) => this.changeView({ instrument: event.detail.instrument }));
    for (const radio of this.form.querySelectorAll("input[name=tf]")) {
      radio.addEventListener("change", () => {
        if (radio.checked) {
          this.changeView({ timeframe: radio.value });
        }
      });
    }
    window.addEventListener("popstate", async () => {
      const wanted = readViewFromUrl();
      this.view = { instrument: await this.resolveInstrument(wanted.instrument), timeframe: wanted.timeframe };
      this.syncControls();
      this.indicators.choose(wanted.indicators);
      this.loadView();
    });
    document.addEventListener(THEME_EVENT, () => {
      this.chart.applyColors();
      this.publish();
    });
    this.root.querySelector("[data-chart-retry]").addEventListener("click", () => this.loadView());
    this.goLive.addEventListener("click", () => {
      this.chart.scrollToLatest();
      this.chartElement.focus();
    });
  }

  changeView(change) {
    this.view = { ...this.view, ...change };
    writeViewToUrl(this.urlView(), { push: true });
    this.loadView();
  }

  // --- Instruments ---------------------------------------------------------------------------

  instrumentInfo(id) {
    return this.picker.info(id);
  }

  /** The instrument to show for a wanted id: it, if it exists (even if inactive), else the first. */
  async resolveInstrument(wanted) {
    const ids = this.picker.ids();
    if (wanted === null || ids.includes(wanted)) {
      // With no instrument asked for, open the one with the freshest data (the server knows which).
      const fresh = Number.parseInt(this.root.dataset.defaultInstrument ?? "", 10);
      return wanted ?? (ids.includes(fresh) ? fresh : ids[0]);
    }
    try {
      const instrument = await fetchInstrument(this.urls.instruments, wanted);
      if (instrument) {
        this.picker.add(instrument, "Inactive");
        return instrument.id;
      }
      this.showNotice(`There is no instrument ${wanted}; showing the first one instead.`);
    } catch (error) {
      this.showNotice(`Instrument ${wanted} could not be loaded: ${error.message}`);
    }
    return ids[0];
  }

  syncControls() {
    this.picker.value = this.view.instrument;
    const radio = this.form.querySelector(`input[name=tf][value="${this.view.timeframe}"]`);
    if (radio) {
      radio.checked = true;
    }
  }

  showNoInstruments() {
    this.setOverlay("empty", "No instruments yet. Run “python manage.py load_sample_data” or start a collector.");
    this.publish();
  }

  // --- Loading a view ------------------------------------------------------------------------

  async loadView() {
    const generation = ++this.generation;
    this.abort?.abort();
    clearTimeout(this.olderRetryTimer);
    clearTimeout(this.viewRetryTimer);
    this.abort = new AbortController();
    const { instrument, timeframe } = this.view;
    Object.assign(this, {
      store: new BarStore(),
      drawn: false,
      restLoaded: false,
      loadingOlder: false,
      historyExhausted: false,
      olderRetryAt: 0,
      olderError: null,
      olderLoads: 0,
      updates: 0,
      hoverTime: null,
      error: null,
    });
    this.historyBadge.hidden = true;
    this.goLive.hidden = true;
    this.chart.setTimeframe(timeframe);
    // Indicator lines first: left on the chart, their times would stay on the new view's time scale.
    this.indicators.reset();
    this.chart.setBars([], { fit: true });
    this.alerts.loadRules();
    this.renderTitle();
    this.renderLegend();
    this.setOverlay("loading");
    this.feed.followSeries([{ instrument, timeframe }]);
    this.publish();

    try {
      const bars = await fetchBars(this.urls.bars, {
        instrument,
        timeframe,
        limit: PAGE_BARS,
        signal: this.abort.signal,
      });
      if (generation !== this.generation) {
        return;
      }
      this.historyExhausted = bars.length < PAGE_BARS;
      this.store.merge(bars, { override: false });
      this.restLoaded = true;
      this.redraw();
      this.indicators.loadAll();
    } catch (error) {
      if (error.name === "AbortError" || generation !== this.generation) {
        return;
      }
      this.restLoaded = true;
      this.error = error instanceof ApiError ? error.message : String(error);
      const needsLogin = error instanceof ApiError && (error.status === 401 || error.status === 403);
      const login = this.root.querySelector("[data-chart-login]");
      if (login) {
        login.hidden = !needsLogin;
      }
      let text = needsLogin ? `Log in to see market data. (${this.error})` : `Could not load bars: ${this.error}`;
      if (error instanceof ApiError && error.status === 429) {
        // Rate limited: try again by itself once the server says it may.
        const seconds = error.retryAfter ?? RETRY_AFTER_MS / 1000;
        text = `Too many requests; trying again in ${seconds} s.`;
        this.viewRetryTimer = setTimeout(() => {
          if (generation === this.generation) {
            this.loadView();
          }
        }, seconds * 1000);
      }
      if (this.store.size === 0) {
        this.setOverlay("error", text);
      }
      this.publish();
    }
  }

  /** Put the whole store on the chart; the first time for a view, scroll to the newest bars. */
  redraw() {
    if (this.store.size > 0) {
      this.setPrecision(pricePrecision(this.store.bars));
    }
    this.chart.setBars(this.store.bars, { fit: !this.drawn });
    this.drawn = true;
    this.refreshOverlay();
    this.renderLegend();
    this.renderTitle();
    this.publish();
  }

  setPrecision(precision) {
    this.precision = precision;
    this.chart.setPrecision(precision);
    this.indicators.setPrecision(precision);
    this.alerts.setPrecision(precision);
  }

  refreshOverlay() {
    if (this.store.size > 0) {
      this.setOverlay(null);
    } else if (this.restLoaded && this.error === null) {
      const { symbol } = this.instrumentInfo(this.view.instrument);
      this.setOverlay("empty", `No ${this.view.timeframe} bars for ${symbol} yet.`);
    }
  }

  setOverlay(which, text) {
    for (const [name, element] of Object.entries(this.overlays)) {
      element.hidden = name !== which;
    }
    if (which === "empty" && text) {
      this.overlays.empty.querySelector("[data-chart-empty-text]").textContent = text;
    }
    if (which === "error" && text) {
      this.overlays.error.querySelector("[data-chart-error-text]").textContent = text;
    }
  }

  isCurrent(message) {
    return message.instrument === this.view.instrument && message.timeframe === this.view.timeframe;
  }

  // --- Live data -----------------------------------------------------------------------------

  onSnapshot(message) {
    if (!this.isCurrent(message)) {
      return;
    }
    // On a reconnect the snapshot also fills the bars missed while disconnected.
    const changed = this.store.merge(message.bars, { override: true });
    if (changed > 0 || !this.drawn) {
      this.redraw();
    }
  }

  onBar(message) {
    if (!this.isCurrent(message)) {
      return;
    }
    const bar = message.bar;
    const kind = this.store.upsert(bar);
    this.updates += 1;
    if (this.drawn) {
      const precision = Math.max(this.precision, pricePrecision([bar]));
      if (precision !== this.precision) {
        this.setPrecision(precision);
      }
      this.chart.applyBar(bar, kind, this.store.bars);
      this.refreshOverlay();
      this.indicators.onBar(message);
    }
    if (this.hoverTime === null || this.hoverTime === bar.time) {
      this.renderLegend();
    }
    this.renderTitle();
    this.publish();
  }

  onStatus({ state }) {
    this.connection = state;
    showConnection(this.status, state);
    this.publish();
  }

  showNotice(message) {
    this.noticeBadge.textContent = message;
    this.noticeBadge.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => {
      this.noticeBadge.hidden = true;
    }, NOTICE_FOR_MS);
  }

  // --- Older history -------------------------------------------------------------------------

  onVisibleRange(range) {
    if (range === null) {
      return;
    }
    this.goLive.hidden = !this.drawn || this.store.size === 0 || !this.chart.isScrolledBack();
    if (
      !this.drawn ||
      this.loadingOlder ||
      this.historyExhausted ||
      this.store.size === 0 ||
      Date.now() < this.olderRetryAt
    ) {
      return;
    }
    if (this.chart.barsBeforeView(range) < LOAD_OLDER_WHEN_BARS_LEFT) {
      this.loadOlder();
    }
  }

  async loadOlder() {
    const generation = this.generation;
    const { instrument, timeframe } = this.view;
    this.loadingOlder = true;
    this.showHistoryBadge("Loading older bars…");
    this.publish();
    const end = this.store.first.time;
    try {
      const bars = await fetchBars(this.urls.bars, {
        instrument,
        timeframe,
        limit: PAGE_BARS,
        end,
        signal: this.abort.signal,
      });
      if (generation !== this.generation) {
        return;
      }
      this.historyExhausted = bars.length < PAGE_BARS;
      this.olderError = null;
      this.olderLoads += 1;
      if (this.store.merge(bars, { override: false }) > 0) {
        this.chart.setBars(this.store.bars, { fit: false });
        this.indicators.loadBefore(end, PAGE_BARS);
      }
      this.showHistoryBadge(this.historyExhausted ? "Start of history" : null);
    } catch (error) {
      if (error.name === "AbortError" || generation !== this.generation) {
        return;
      }
      // Try again later by itself (the view may not move again to trigger it), sooner if told.
      const delay = error instanceof ApiError && error.retryAfter !== null ? error.retryAfter * 1000 : RETRY_AFTER_MS;
      this.olderError = error.message;
      this.olderRetryAt = Date.now() + delay;
      this.olderRetryTimer = setTimeout(() => {
        if (generation === this.generation) {
          this.onVisibleRange(this.chart.visibleRange());
        }
      }, delay);
      this.showHistoryBadge(`Could not load older bars: ${error.message}`);
    } finally {
      if (generation === this.generation) {
        this.loadingOlder = false;
        this.publish();
      }
    }
  }

  showHistoryBadge(text) {
    clearTimeout(this.historyBadgeTimer);
    this.historyBadge.hidden = text === null;
    if (text !== null) {
      this.historyBadge.textContent = text;
      if (!this.loadingOlder || text === "Start of history") {
        this.historyBadgeTimer = setTimeout(() => {
          this.historyBadge.hidden = true;
        }, 2500);
      }
    }
  }

  // --- Legend, title and the test hook ---------------------------------------------------------

  renderLegend() {
    const { symbol, exchange } = this.instrumentInfo(this.view.instrument);
    const hovered = this.hoverTime === null ? -1 : this.store.indexOf(this.hoverTime);
    const bar = hovered >= 0 ? this.store.bars[hovered] : this.store.last;
    const previous = bar ? this.store.previous(bar.time) : null;
    this.legend.render({ symbol, exchange, timeframe: this.view.timeframe }, bar, previous, this.precision);
    this.indicators.renderLegend(hovered >= 0 ? this.hoverTime : null);
  }

  renderTitle() {
    const { symbol, exchange } = this.instrumentInfo(this.view.instrument);
    const last = this.store.last;
    const price = last ? ` ${formatPrice(last.close, this.precision)}` : "";
    document.title = `${symbol}${price} · ${this.view.timeframe} · cryptostock`;
    this.chartElement.setAttribute(
      "aria-label",
      `Candlestick chart of ${symbol}${exchange ? ` on ${exchange}` : ""}, ${this.view.timeframe} bars, ` +
        `times in ${timeZoneLabel(this.view.timeframe)}`,
    );
  }

  publish() {
    const last = this.store.last;
    Object.assign(this.hook, {
      instrument: this.view.instrument,
      timeframe: this.view.timeframe,
      barsLoaded: this.store.size,
      firstBarTime: this.store.first?.time ?? null,
      lastBar: last ? { ...last } : null,
      updates: this.updates,
      connection: this.connection,
      theme: currentTheme(),
      ready: this.drawn && this.restLoaded,
      loadingOlder: this.loadingOlder,
      olderLoads: this.olderLoads,
      olderError: this.olderError,
      historyExhausted: this.historyExhausted,
      error: this.error,
      ...this.indicators.state(),
      ...this.alerts.state(),
    });
  }
}

const root = document.querySelector("[data-chart-app]");
if (root) {
  new ChartPage(root).start();
}
