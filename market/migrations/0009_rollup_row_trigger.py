"""PostgreSQL: the roll-up's change log of 1m bars moves from a statement trigger to a row trigger
that the bar store may switch off for the bars it notes itself.

The statement-level triggers of migration 0004 made PostgreSQL keep a transition table of every
row a statement wrote, 1m or not: for a million-bar COPY a spill to disk and a scan, a fifth of the
time of inserting the bars (docs/barstore.md). Now:

- A row-level trigger notes each written 1m bar as a one-bar span, as on SQLite and hypertables,
  unless the transaction's setting `cryptostock.rollup_noted_by_writer` is 'on'. Bars of other
  timeframes (the roll-up's own writes) are passed over by its WHEN clause without a call.
- The bar store, through which every bulk write of bars goes (collectors, imports, backfills),
  turns that setting on around its writes and inserts the spans of what it wrote itself, one per
  instrument and UTC day as before (market/barstore.py).
So every other writer (the admin, the ORM, raw SQL) is still covered without remembering anything;
a big write through raw SQL notes a span per bar, which the roll-up merges.

SQLite and TimescaleDB hypertables already had a row trigger; SQLite's stays as it is, the
hypertable's gains the same WHEN clause.
"""

import importlib

from django.db import migrations

rollup_triggers = importlib.import_module("market.migrations.0004_rollup_triggers")

ROW_TRIGGER = """
DROP TRIGGER IF EXISTS market_bar_rollup_insert ON market_bar;
DROP TRIGGER IF EXISTS market_bar_rollup_update ON market_bar;
DROP TRIGGER IF EXISTS market_bar_rollup_row ON market_bar;
DROP FUNCTION IF EXISTS market_bar_note_changes();
CREATE OR REPLACE FUNCTION market_bar_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO market_pendingrollup (instrument_id, first_time, last_time)
    VALUES (NEW.instrument_id, NEW."time", NEW."time");
    RETURN NULL;
END
$$;
CREATE TRIGGER market_bar_rollup_row AFTER INSERT OR UPDATE ON market_bar FOR EACH ROW
    WHEN (NEW.timeframe = '1m' AND current_setting('cryptostock.rollup_noted_by_writer', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION market_bar_note_change();
"""


def forward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ROW_TRIGGER)


def backward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(rollup_triggers.POSTGRES_DROP)
        hypertable = rollup_triggers.is_hypertable(cursor)
        cursor.execute(
            rollup_triggers.POSTGRES_ROW_TRIGGER if hypertable else rollup_triggers.POSTGRES_STATEMENT_TRIGGER
        )


class Migration(migrations.Migration):
    dependencies = [("market", "0008_bar_composite_primary_key")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
