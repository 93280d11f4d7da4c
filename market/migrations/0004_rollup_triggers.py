"""Record every change to 1m bars for the incremental roll-up, and index the bars still open.

The roll-up (market/rollup.py) must know which buckets changed since its last run. Rather than
trusting every writer (collector, import, backfill, admin, raw SQL, the COPY-based bar store) to
remember it, triggers on the bar table append the changed span to `market_pendingrollup`:

- PostgreSQL: one statement-level trigger per INSERT and UPDATE, reading the statement's transition
  table, so a 100,000-row write costs one extra INSERT ... SELECT ... GROUP BY, not 100,000 inserts.
  It records one span per instrument and UTC day touched.
- TimescaleDB hypertables do not support transition tables, so there a row-level trigger does the
  same per row (slower on bulk loads; documented in docs/scheduled.md).
- SQLite has only row-level triggers: one pending row per changed 1m bar, merged by the roll-up.

Deletes are not recorded: retention deletes old 1m bars while keeping the higher timeframes built
from them, which must not be rebuilt from what is left.

The partial index on bars that are not final lets the roll-up find and close buckets whose period
ended without any new 1m bar (a quiet last minute) without scanning the table. It is tiny: only
the open bars of each series are in it.

Existing 1m bars are queued once, so the first roll-up after this migration covers the history.
"""

from django.db import migrations

BASE_TIMEFRAME = "1m"

POSTGRES_STATEMENT_TRIGGER = f"""
CREATE FUNCTION market_bar_note_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO market_pendingrollup (instrument_id, first_time, last_time)
    SELECT instrument_id, min("time"), max("time")
    FROM changed_bars
    WHERE timeframe = '{BASE_TIMEFRAME}'
    GROUP BY instrument_id, floor(date_part('epoch', "time") / 86400);
    RETURN NULL;
END
$$;
CREATE TRIGGER market_bar_rollup_insert AFTER INSERT ON market_bar
    REFERENCING NEW TABLE AS changed_bars FOR EACH STATEMENT EXECUTE FUNCTION market_bar_note_changes();
CREATE TRIGGER market_bar_rollup_update AFTER UPDATE ON market_bar
    REFERENCING NEW TABLE AS changed_bars FOR EACH STATEMENT EXECUTE FUNCTION market_bar_note_changes();
"""

POSTGRES_ROW_TRIGGER = f"""
CREATE FUNCTION market_bar_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO market_pendingrollup (instrument_id, first_time, last_time)
    VALUES (NEW.instrument_id, NEW."time", NEW."time");
    RETURN NULL;
END
$$;
CREATE TRIGGER market_bar_rollup_row AFTER INSERT OR UPDATE ON market_bar
    FOR EACH ROW WHEN (NEW.timeframe = '{BASE_TIMEFRAME}') EXECUTE FUNCTION market_bar_note_change();
"""

POSTGRES_DROP = """
DROP TRIGGER IF EXISTS market_bar_rollup_insert ON market_bar;
DROP TRIGGER IF EXISTS market_bar_rollup_update ON market_bar;
DROP TRIGGER IF EXISTS market_bar_rollup_row ON market_bar;
DROP FUNCTION IF EXISTS market_bar_note_changes();
DROP FUNCTION IF EXISTS market_bar_note_change();
"""

SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER market_bar_rollup_{event.lower()} AFTER {event} ON market_bar
    WHEN NEW.timeframe = '{BASE_TIMEFRAME}'
    BEGIN
        INSERT INTO market_pendingrollup (instrument_id, first_time, last_time)
        VALUES (NEW.instrument_id, NEW."time", NEW."time");
    END
    """
    for event in ("INSERT", "UPDATE")
]

SQLITE_DROP = ["DROP TRIGGER IF EXISTS market_bar_rollup_insert", "DROP TRIGGER IF EXISTS market_bar_rollup_update"]

OPEN_BARS_INDEX = 'CREATE INDEX market_bar_open_idx ON market_bar (timeframe, "time") WHERE NOT final'
DROP_OPEN_BARS_INDEX = "DROP INDEX IF EXISTS market_bar_open_idx"

QUEUE_EXISTING = {
    "postgresql": f"""
        INSERT INTO market_pendingrollup (instrument_id, first_time, last_time)
        SELECT instrument_id, min("time"), max("time") FROM market_bar WHERE timeframe = '{BASE_TIMEFRAME}'
        GROUP BY instrument_id, floor(date_part('epoch', "time") / 86400)
    """,
    "sqlite": f"""
        INSERT INTO market_pendingrollup (instrument_id, first_time, last_time)
        SELECT instrument_id, min("time"), max("time") FROM market_bar WHERE timeframe = '{BASE_TIMEFRAME}'
        GROUP BY instrument_id, date("time")
    """,
}


def is_hypertable(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if cursor.fetchone() is None:
        return False
    cursor.execute("SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'market_bar'")
    return cursor.fetchone() is not None


def install(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"the roll-up triggers support PostgreSQL and SQLite, not {vendor}")
    with schema_editor.connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(POSTGRES_ROW_TRIGGER if is_hypertable(cursor) else POSTGRES_STATEMENT_TRIGGER)
        else:
            for statement in SQLITE_TRIGGERS:
                cursor.execute(statement)
        cursor.execute(OPEN_BARS_INDEX)
        cursor.execute(QUEUE_EXISTING[vendor])


def uninstall(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        if schema_editor.connection.vendor == "postgresql":
            cursor.execute(POSTGRES_DROP)
        else:
            for statement in SQLITE_DROP:
                cursor.execute(statement)
        cursor.execute(DROP_OPEN_BARS_INDEX)


class Migration(migrations.Migration):
    dependencies = [("market", "0003_scheduled")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
