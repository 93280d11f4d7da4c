// The bars of one series as the page knows them: sorted by time, one bar per time. Pure, no DOM.
//
// Bars arrive from three places that overlap: the REST history (newest 1000, then older pages), the
// WebSocket snapshot (newest 500, again on every reconnect) and live updates. Live data is newer than
// what the database held when a page was read, so REST pages never overwrite a bar already known;
// snapshots and live updates do.

export class BarStore {
  constructor() {
    this.bars = [];
  }

  get size() {
    return this.bars.length;
  }

  get first() {
    return this.bars[0] ?? null;
  }

  get last() {
    return this.bars[this.bars.length - 1] ?? null;
  }

  /** Index of the bar at `time`, or -(insertion point) - 1 when there is none. */
  indexOf(time) {
    let low = 0;
    let high = this.bars.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const probe = this.bars[middle].time;
      if (probe === time) {
        return middle;
      }
      if (probe < time) {
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return -low - 1;
  }

  /** The bar before the one at `time` (for the change of the hovered bar), or null. */
  previous(time) {
    const index = this.indexOf(time);
    const before = index >= 0 ? index - 1 : -index - 2;
    return before >= 0 ? this.bars[before] : null;
  }

  /**
   * Merge a batch (any order). With `override`, a bar of the batch replaces the known bar of the
   * same time. Returns how many bars were added or changed.
   */
  merge(batch, { override }) {
    if (batch.length === 0) {
      return 0;
    }
    const byTime = new Map(this.bars.map((bar) => [bar.time, bar]));
    let changed = 0;
    for (const bar of batch) {
      const known = byTime.get(bar.time);
      if (known === undefined || (override && !sameBar(known, bar))) {
        byTime.set(bar.time, bar);
        changed += 1;
      }
    }
    if (changed > 0) {
      this.bars = [...byTime.values()].sort((a, b) => a.time - b.time);
    }
    return changed;
  }

  /**
   * Apply one live bar. Returns what the chart has to do:
   * "append" (a new latest bar), "update" (the latest bar changed), "historical" (an older bar
   * changed in place), "insert" (a bar inside the series that was missing: redraw), or "same".
   */
  upsert(bar) {
    const last = this.last;
    if (last === null || bar.time > last.time) {
      this.bars.push(bar);
      return "append";
    }
    const index = this.indexOf(bar.time);
    if (index < 0) {
      this.bars.splice(-index - 1, 0, bar);
      return "insert";
    }
    if (sameBar(this.bars[index], bar)) {
      return "same";
    }
    this.bars[index] = bar;
    return index === this.bars.length - 1 ? "update" : "historical";
  }
}

function sameBar(a, b) {
  return (
    a.open === b.open &&
    a.high === b.high &&
    a.low === b.low &&
    a.close === b.close &&
    a.volume === b.volume &&
    a.final === b.final
  );
}
