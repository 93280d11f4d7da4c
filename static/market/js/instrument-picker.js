// The instrument selector: a <select> grouped by exchange (it works without JavaScript, in the plain
// GET form) and a search box over every source's instruments (a <datalist>: the browser's own
// suggestions, keyboard and screen-reader friendly). Picking a match selects it in the <select>.

import { fetchActiveInstruments } from "cryptostock/api";

export class InstrumentPicker extends EventTarget {
  /**
   * @param {HTMLSelectElement} select
   * @param {HTMLInputElement|null} search the search box (list= a datalist), if the page has one
   */
  constructor(select, search) {
    super();
    this.select = select;
    this.search = search;
    this.select.addEventListener("change", () => this.picked());
    if (search) {
      search.addEventListener("change", () => this.pickFromSearch());
      search.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          this.pickFromSearch();
        }
      });
      this.fillSuggestions();
    }
  }

  ids() {
    return [...this.select.options].map((option) => Number(option.value)).filter((id) => id > 0);
  }

  /** Symbol and exchange of an instrument in the selector. */
  info(id) {
    const option = this.select.querySelector(`option[value="${id}"]`);
    return option
      ? { symbol: option.dataset.symbol, exchange: option.dataset.exchange }
      : { symbol: `#${id}`, exchange: "" };
  }

  get value() {
    return Number(this.select.value);
  }

  set value(id) {
    this.select.value = String(id);
  }

  add(instrument, groupLabel) {
    let group = [...this.select.querySelectorAll("optgroup")].find((g) => g.label === groupLabel);
    if (!group) {
      group = document.createElement("optgroup");
      group.label = groupLabel;
      this.select.append(group);
    }
    const option = new Option(`${instrument.symbol} · ${instrument.exchange}`, String(instrument.id));
    option.dataset.symbol = instrument.symbol;
    option.dataset.exchange = instrument.exchange;
    option.dataset.assetClass = instrument.asset_class;
    group.append(option);
    this.fillSuggestions();
  }

  /** Fill an empty selector from the API (the page was rendered before any instrument existed). */
  async loadFromApi(instrumentsUrl) {
    try {
      const instruments = await fetchActiveInstruments(instrumentsUrl);
      if (instruments.length > 0) {
        this.select.replaceChildren();
        for (const instrument of instruments) {
          this.add(instrument, instrument.exchange);
        }
        this.select.disabled = false;
      }
    } catch (error) {
      console.warn("could not load instruments", error);
    }
  }

  fillSuggestions() {
    const list = this.search?.list;
    if (!list) {
      return;
    }
    list.replaceChildren(...[...this.select.options].filter((o) => Number(o.value) > 0).map((o) => new Option(o.text)));
    this.search.disabled = this.select.disabled;
  }

  /** The search text's instrument: an exact "SYMBOL · EXCHANGE", else the first symbol containing it. */
  pickFromSearch() {
    const text = this.search.value.trim().toLowerCase();
    if (text === "") {
      return;
    }
    const options = [...this.select.options].filter((option) => Number(option.value) > 0);
    const match =
      options.find((option) => option.text.toLowerCase() === text) ??
      options.find((option) => option.dataset.symbol.toLowerCase().startsWith(text)) ??
      options.find((option) => option.text.toLowerCase().includes(text));
    if (!match) {
      this.search.setCustomValidity(`No instrument matches “${this.search.value}”.`);
      this.search.reportValidity();
      return;
    }
    this.search.setCustomValidity("");
    this.search.value = "";
    if (match.value !== this.select.value) {
      this.select.value = match.value;
      this.picked();
    }
  }

  picked() {
    this.dispatchEvent(new CustomEvent("change", { detail: { instrument: this.value } }));
  }
}
