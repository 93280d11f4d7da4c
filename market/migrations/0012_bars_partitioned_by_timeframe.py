"""On plain PostgreSQL the bar table becomes partitioned by timeframe, one partition per timeframe.

Why (docs/barstore.md, "Partitioned by timeframe"): a new bar's cost is mostly the server's, and
two things in the old layout cost it a quarter:

- The roll-up's statement trigger (migration 0004) makes PostgreSQL keep a transition table of
  every row a statement writes, even when the trigger then skips the statement. A trigger on a
  partitioned table fires for statements on that table, not for writes straight into a partition:
  the bar store writes its big appends and its upserts into the partition and notes the roll-up
  spans itself, while every other writer, through `market_bar`, is still noted by the trigger.
- The primary key was (instrument, timeframe, time): the variable-width timeframe before `time` kept
  PostgreSQL from caching the offset of `time` in an index tuple, so every comparison walked the
  tuple. Within a partition the timeframe is one value, so the key is now (instrument, time,
  timeframe): the same uniqueness, the same range scans (a query names its timeframe and so its
  partition), and fixed-width columns first.

The partitions of the rolled-up timeframes leave a fifth of each page free for the roll-up's
updates of their open bars (see `_storage`).

Guarded: SQLite keeps its table, and so does a TimescaleDB hypertable (migration 0002), which is
partitioned by time into chunks already and cannot be made of a partitioned table. The bar store
asks the table's kind and writes accordingly.

The bars are copied into the new table, whose key is built once after the copy; the old table goes
with its triggers and index, which are made again on the new one. On a big table this takes about
as long as a restore of the bars, under a lock that blocks every reader and writer of bars.
Reversible.
"""

import importlib
from collections.abc import Callable
from typing import Any

from django.db import migrations

rollup_triggers = importlib.import_module("market.migrations.0004_rollup_triggers")

# As they were when this migration was written; a timeframe added later needs its own partition
# (market/tests/test_migrations.py checks that each one has one).
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
BASE_TIMEFRAME = "1m"
ROLLED_UP_FILLFACTOR = 80
TABLE = "market_bar"
NEW = "market_bar_remade"

STATEMENT_TRIGGERS = "CREATE TRIGGER" + rollup_triggers.POSTGRES_STATEMENT_TRIGGER.split("CREATE TRIGGER", 1)[1]


def partition_name(timeframe: str) -> str:
    return f"{TABLE}_{timeframe}"


def partitioned_layout() -> list[str]:
    partitions = [
        f"CREATE TABLE {partition_name(timeframe)} PARTITION OF {NEW} FOR VALUES IN ('{timeframe}'){_storage(timeframe)}"
        for timeframe in TIMEFRAMES
    ]
    return [
        f"CREATE TABLE {NEW} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY LIST (timeframe)",
        *partitions,
        *_move_bars_and_rename(),
        f'ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (instrument_id, "time", timeframe)',
        rollup_triggers.OPEN_BARS_INDEX,
        STATEMENT_TRIGGERS,
    ]


def _storage(timeframe: str) -> str:
    """The roll-up updates the open bar of each rolled-up timeframe every minute; room left on their
    pages lets most of those updates stay on the page without new index entries (HOT). Measured
    (docs/scheduled.md): fillfactor 80 took 40-50% of the updates HOT and the roll-up's server time
    from about 118 to 97 ms a run. 1m bars are written once and keep their pages full."""
    return "" if timeframe == BASE_TIMEFRAME else f" WITH (fillfactor = {ROLLED_UP_FILLFACTOR})"


def plain_layout() -> list[str]:
    return [
        f"CREATE TABLE {NEW} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
        *_move_bars_and_rename(),
        f'ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (instrument_id, timeframe, "time")',
        rollup_triggers.OPEN_BARS_INDEX,
        STATEMENT_TRIGGERS,
    ]


def _move_bars_and_rename() -> list[str]:
    """Copied before the new table has its key or triggers: one index build, and no roll-up notes
    for bars that were noted when they were first written."""
    return [f"INSERT INTO {NEW} SELECT * FROM {TABLE}", f"DROP TABLE {TABLE}", f"ALTER TABLE {NEW} RENAME TO {TABLE}"]


def relayout(statements: Callable[[], list[str]]) -> Callable[[Any, Any], None]:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            if rollup_triggers.is_hypertable(cursor):
                return
        for statement in statements():
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("market", "0011_rollup_notes_by_the_bar_store")]

    operations = [migrations.RunPython(relayout(partitioned_layout), relayout(plain_layout), elidable=False)]
