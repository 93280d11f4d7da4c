"""The roll-up's SQL, for PostgreSQL and for SQLite (the embedded default).

One statement per cascade step, for all instruments at once: select the source bars of the spans to
rebuild, group them into buckets, and upsert the buckets, changing a stored bar only when a value differs (`IS DISTINCT
FROM`). PostgreSQL returns how many bars changed and the changed bars near the live edge (the ones
to publish); SQLite returns every changed bar and Python picks.

Spans: PostgreSQL reads the claimed 1m spans from the run's temporary table and widens and merges
them per step in SQL; SQLite gets them from Python as JSON.

First and last: on PostgreSQL the first and last element of `array_agg` over bars sorted by
(instrument, bucket, time); on SQLite window functions (it has no ordered aggregates before 3.44).
Source bars are read in time order, so float sums come out bit-identical on every rebuild: a rebuild of unchanged bars
writes nothing.

Timestamps: PostgreSQL buckets with `date_bin` from the Unix epoch; SQLite stores datetimes as
'YYYY-MM-DD HH:MM:SS' text (UTC), so it buckets whole epoch seconds and formats them back the same way.
"""

from __future__ import annotations

BAR_COLUMNS = 'instrument_id, timeframe, "time", open, high, low, close, volume, trades, vwap, final'
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "trades", "vwap", "final")

_SET = ", ".join(f"{column} = EXCLUDED.{column}" for column in VALUE_COLUMNS)
_STORED = ", ".join(f"market_bar.{column}" for column in VALUE_COLUMNS)
_EXCLUDED = ", ".join(f"EXCLUDED.{column}" for column in VALUE_COLUMNS)
UPSERT_TAIL = f"""
ON CONFLICT (instrument_id, timeframe, "time") DO UPDATE SET {_SET}
WHERE ({_STORED}) IS DISTINCT FROM ({_EXCLUDED})
RETURNING {BAR_COLUMNS}
"""

# Trades and vwap are only known for a bucket if every source bar knows them. The source bars
# arrive sorted by (instrument, bucket, time) (`_pg_source`), so each group's bars are aggregated in
# time order: open and close are the first and last element of the group's array (the groups are
# small, 3 to 6 bars per step of the cascade), and float sums come out bit-identical on every
# rebuild. Both are much cheaper than min/max over [epoch, price] arrays, which build an array per
# source bar, and than ordered aggregates (`array_agg(open ORDER BY time)`), which sort every group.
_PG_AGGREGATES = """
    (array_agg(b.open))[1] AS open,
    max(b.high) AS high,
    min(b.low) AS low,
    (array_agg(b.close))[count(*)] AS close,
    sum(b.volume) AS volume,
    CASE WHEN count(b.trades) = count(*) THEN sum(b.trades) END AS trades,
    CASE WHEN count(b.vwap) = count(*) AND sum(b.volume) > 0 THEN sum(b.vwap * b.volume) / sum(b.volume) END AS vwap,
    bool_or(b.occupied) AS occupied
"""


def _pg_source(bucket: str, *span_columns: str) -> str:
    """The source bars of every span, labelled with their bucket, sorted by (instrument, bucket, time).

    Each span's bars are read by an index range scan (LATERAL with OFFSET 0 keeps the planner from
    hashing the whole source timeframe for a handful of spans). The ORDER BY of a subquery is kept by
    PostgreSQL, so the GROUP BY above runs as a plain group aggregate over sorted input (no hash
    table, no second sort) that sees every bucket's bars in time order; it also hands the rolled-up
    bars to the INSERT in index order, which keeps the next step's range scans on few heap pages.
    """
    extra = "".join(f", s.{column}" for column in span_columns)
    return f"""(
        SELECT s.instrument_id, s.occupied{extra}, {bucket} AS bucket,
            b."time", b.open, b.high, b.low, b.close, b.volume, b.trades, b.vwap
        FROM spans s
        CROSS JOIN LATERAL (
            SELECT "time", open, high, low, close, volume, trades, vwap
            FROM market_bar
            WHERE instrument_id = s.instrument_id AND timeframe = %(source)s
                AND "time" >= s.start_time AND "time" < s.end_time
            ORDER BY "time" OFFSET 0
        ) AS b
        ORDER BY s.instrument_id, bucket, b."time"
    ) AS b"""


# A span whose target range holds no bar yet (history rolled up for the first time) takes a plain
# INSERT; the others the upsert (spans are MATERIALIZED so that the test runs once per span, not
# once per source bar). ON CONFLICT probes the unique index once more per row, which costs a full
# roll-up about half its insert time. Spans of a few buckets (the minute-by-minute run: one bucket
# per instrument and step) take the upsert without asking, as the probe would cost as much as it
# saves. (Only roll-ups write these timeframes, one at a time; a bar written in between by someone
# else fails the run, which the next one retries.)
_PG_OCCUPIED = """
    (s.end_time - s.start_time <= 16 * %(step)s::interval OR EXISTS (
        SELECT 1 FROM market_bar m
        WHERE m.instrument_id = s.instrument_id AND m.timeframe = %(target)s
            AND m."time" >= s.start_time AND m."time" < s.end_time
    )) AS occupied
"""

# Only the count of changed bars and the changed bars near the live edge (to publish) come back:
# a full roll-up changes hundreds of thousands of bars that nobody needs in Python, so RETURNING
# yields a NULL for each of them rather than a copy of the row.
_PG_LIVE = f'CASE WHEN "time" > %(live_after)s THEN json_build_array({BAR_COLUMNS}) END AS live'
_PG_RESULT = f"""
, inserted AS (
    INSERT INTO market_bar ({BAR_COLUMNS}) SELECT {BAR_COLUMNS} FROM rolled WHERE NOT occupied
    RETURNING {_PG_LIVE}
), upserted AS (
    INSERT INTO market_bar ({BAR_COLUMNS}) SELECT {BAR_COLUMNS} FROM rolled WHERE occupied
    ON CONFLICT (instrument_id, timeframe, "time") DO UPDATE SET {_SET}
    WHERE ({_STORED}) IS DISTINCT FROM ({_EXCLUDED})
    RETURNING {_PG_LIVE}
), changed AS (
    SELECT live FROM inserted UNION ALL SELECT live FROM upserted
)
SELECT count(*), coalesce(json_agg(live) FILTER (WHERE live IS NOT NULL), '[]') FROM changed
"""

_PG_EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
_PG_DATE_BIN = f'date_bin(%(step)s::interval, b."time", {_PG_EPOCH})'

# The spans of whole `target` buckets to rebuild, from the 1m spans this run claimed (in the
# session's temporary table, see CLAIM_PENDING_POSTGRES): each claimed span widened to the buckets
# holding its first and last minute, then overlapping or touching spans of an instrument merged
# (islands: a span starts a new one unless it begins before the furthest end so far). The same as
# `rollup_plan.bucket_spans`, without sending thousands of spans through Python twice per step.
_PG_CLAIMED_SPANS = f"""
widened AS (
    SELECT instrument_id,
        date_bin(%(step)s::interval, first_time, {_PG_EPOCH}) AS start_time,
        date_bin(%(step)s::interval, last_time, {_PG_EPOCH}) + %(step)s::interval AS end_time
    FROM rollup_claimed_spans
    WHERE instrument_id <> ALL(%(excluded)s::bigint[])
), marked AS (
    SELECT *, CASE WHEN start_time <= max(end_time) OVER (
            PARTITION BY instrument_id ORDER BY start_time, end_time
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) THEN 0 ELSE 1 END AS starts_island
    FROM widened
), islands AS (
    SELECT *, sum(starts_island) OVER (PARTITION BY instrument_id ORDER BY start_time, end_time) AS island
    FROM marked
), spans AS MATERIALIZED (
    SELECT s.*, {_PG_OCCUPIED}
    FROM (
        SELECT instrument_id, min(start_time) AS start_time, max(end_time) AS end_time
        FROM islands GROUP BY instrument_id, island
    ) AS s
)"""

POSTGRES_UTC = f"""
WITH {_PG_CLAIMED_SPANS}, rolled AS (
    SELECT instrument_id, %(target)s::varchar AS timeframe, bucket AS "time", open, high, low, close, volume,
        trades::integer, vwap, bucket + %(step)s::interval <= %(now)s AS final, occupied
    FROM (
        SELECT b.instrument_id, b.bucket, {_PG_AGGREGATES}
        FROM {_pg_source(_PG_DATE_BIN)}
        GROUP BY b.instrument_id, b.bucket
    ) AS buckets
)
{_PG_RESULT}
"""

POSTGRES_SESSIONS = f"""
WITH spans AS MATERIALIZED (
    SELECT s.instrument_id, s.label, s.start_time, s.end_time, EXISTS (
        SELECT 1 FROM market_bar m WHERE m.instrument_id = s.instrument_id AND m.timeframe = %(target)s
            AND m."time" = s.label
    ) AS occupied
    FROM unnest(%(ids)s::bigint[], %(labels)s::timestamptz[], %(starts)s::timestamptz[],
        %(ends)s::timestamptz[]) AS s(instrument_id, label, start_time, end_time)
), rolled AS (
    SELECT instrument_id, %(target)s::varchar AS timeframe, bucket AS "time", open, high, low, close, volume,
        trades::integer, vwap, session_end <= %(now)s AS final, occupied
    FROM (
        SELECT b.instrument_id, b.bucket, max(b.end_time) AS session_end, {_PG_AGGREGATES}
        FROM {_pg_source("s.label", "end_time")}
        GROUP BY b.instrument_id, b.bucket
    ) AS buckets
)
{_PG_RESULT}
"""

# SQLite: spans arrive as one JSON array of [instrument_id, start, end(, label)] (json_each is built in).
_SQLITE_SPANS = """
spans AS (
    SELECT json_extract(value, '$[0]') AS instrument_id, json_extract(value, '$[1]') AS start_time,
        json_extract(value, '$[2]') AS end_time, json_extract(value, '$[3]') AS label
    FROM json_each(%(spans)s)
)"""

_SQLITE_GROUPED = """
SELECT instrument_id, %(target)s, {bucket_text}, max(first_open), max(high), min(low), max(last_close), sum(volume),
    CASE WHEN count(trades) = count(*) THEN sum(trades) END,
    CASE WHEN count(vwap) = count(*) AND sum(volume) > 0 THEN sum(vwap * volume) / sum(volume) END,
    {final}
FROM ranked
GROUP BY instrument_id, bucket
"""

_SQLITE_RANKED = """
ranked AS (
    SELECT b.instrument_id, b."time", b.high, b.low, b.volume, b.trades, b.vwap, {bucket} AS bucket{extra},
        first_value(b.open) OVER w AS first_open, last_value(b.close) OVER w AS last_close
    FROM spans s
    JOIN market_bar b ON b.instrument_id = s.instrument_id AND b.timeframe = %(source)s
        AND b."time" >= s.start_time AND b."time" < s.end_time
    WINDOW w AS (PARTITION BY b.instrument_id, {bucket} ORDER BY b."time"
        ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)"""

_SQLITE_EPOCH_BUCKET = "(CAST(strftime('%%s', b.\"time\") AS INTEGER) / %(step)s) * %(step)s"

_SQLITE_UTC_FINAL = "bucket + %(step)s <= CAST(strftime('%%s', %(now)s) AS INTEGER)"

SQLITE_UTC = f"""
WITH {_SQLITE_SPANS}, {_SQLITE_RANKED.format(bucket=_SQLITE_EPOCH_BUCKET, extra="")}
INSERT INTO market_bar ({BAR_COLUMNS})
{
    _SQLITE_GROUPED.format(
        bucket_text="datetime(bucket, 'unixepoch')",
        final="bucket + %(step)s <= CAST(strftime('%%s', %(now)s) AS INTEGER)",
    )
}
{UPSERT_TAIL}
"""

SQLITE_SESSIONS = f"""
WITH {_SQLITE_SPANS}, {_SQLITE_RANKED.format(bucket="s.label", extra=", s.end_time")}
INSERT INTO market_bar ({BAR_COLUMNS})
{_SQLITE_GROUPED.format(bucket_text="bucket", final="max(end_time) <= %(now)s")}
{UPSERT_TAIL}
"""

# Close the buckets whose period ended without a new source bar (the partial index on open bars).
FINALIZE = f"""
UPDATE market_bar SET final = TRUE
WHERE NOT final AND timeframe = %(timeframe)s AND "time" <= %(cutoff)s
RETURNING {BAR_COLUMNS}
"""

# Claims a batch of queued spans. No row locks needed: runs are serialized (advisory lock on
# PostgreSQL, the single writer on SQLite), and spans queued meanwhile are not in this snapshot.
CLAIM_PENDING = """
DELETE FROM market_pendingrollup
WHERE id IN (SELECT id FROM market_pendingrollup LIMIT %(limit)s)
RETURNING instrument_id, first_time, last_time
"""

# A roll-up run at a time: a second worker (an overlapping beat tick) skips instead of waiting.
POSTGRES_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(%(key)s)"

# PostgreSQL: a run claims its batch into a temporary table of its session, emptied at commit, that
# every cascade step then reads in SQL (`_PG_CLAIMED_SPANS`); only the count comes back to Python.
CREATE_CLAIM_TABLE = """
CREATE TEMPORARY TABLE IF NOT EXISTS rollup_claimed_spans (
    instrument_id bigint NOT NULL, first_time timestamptz NOT NULL, last_time timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""
CLAIM_PENDING_POSTGRES = f"""
WITH claimed AS ({CLAIM_PENDING})
INSERT INTO rollup_claimed_spans (instrument_id, first_time, last_time) SELECT * FROM claimed
"""
# The claimed spans of exchange-traded instruments, whose daily bar follows the session (planned in
# Python with the exchange calendar).
CLAIMED_SESSION_SPANS = """
SELECT c.instrument_id, c.first_time, c.last_time
FROM rollup_claimed_spans c JOIN market_instrument i ON i.id = c.instrument_id
WHERE i.asset_class = ANY(%(asset_classes)s)
"""
