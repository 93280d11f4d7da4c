"""The roll-up's SQL, for PostgreSQL and for SQLite (the embedded default).

One statement per cascade step: select the source bars of the spans to rebuild, group them into
buckets, and upsert the buckets, changing a stored bar only when a value differs (`IS DISTINCT
FROM`). PostgreSQL returns how many bars changed and the changed bars near the live edge (the ones
to publish); SQLite returns every changed bar and Python picks.

First and last: on PostgreSQL the min and max of [epoch, price] arrays, so groups hash instead of
sorting; on SQLite window functions (it has no ordered aggregates before 3.44). Source bars are read
in time order, so float sums come out bit-identical on every rebuild: a rebuild of unchanged bars
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

# Trades and vwap are only known for a bucket if every source bar knows them. First and last are
# the min and max of [epoch, price] arrays: order-independent, so the aggregate can hash instead of
# sorting every group (ordered aggregates sort per group: 3x slower on a million bars).
_PG_AGGREGATES = """
    (min(ARRAY[b.epoch, b.open]))[2] AS open,
    max(b.high) AS high,
    min(b.low) AS low,
    (max(ARRAY[b.epoch, b.close]))[2] AS close,
    sum(b.volume) AS volume,
    CASE WHEN count(b.trades) = count(*) THEN sum(b.trades) END AS trades,
    CASE WHEN count(b.vwap) = count(*) AND sum(b.volume) > 0 THEN sum(b.vwap * b.volume) / sum(b.volume) END AS vwap
"""

# The source bars of each span by an index range scan in time order: LATERAL with OFFSET 0 keeps the
# planner from hashing the whole source timeframe for a handful of spans, and the time order makes
# the float sums come out bit-identical on every rebuild.
_PG_SOURCE = """
    CROSS JOIN LATERAL (
        SELECT "time", date_part('epoch', "time") AS epoch, open, high, low, close, volume, trades, vwap
        FROM market_bar
        WHERE instrument_id = s.instrument_id AND timeframe = %(source)s
            AND "time" >= s.start_time AND "time" < s.end_time
        ORDER BY "time" OFFSET 0
    ) AS b
"""

# A span whose target range holds no bar yet (history rolled up for the first time) takes a plain
# INSERT; the others the upsert (spans are MATERIALIZED so that the test runs once per span, not
# once per source bar). ON CONFLICT probes the unique index once more per row, which
# costs a full roll-up about half its insert time. (Only roll-ups write these timeframes, one at
# a time; a bar written in between by someone else fails the run, which the next one retries.)
_PG_OCCUPIED = """
    EXISTS (
        SELECT 1 FROM market_bar m
        WHERE m.instrument_id = s.instrument_id AND m.timeframe = %(target)s
            AND m."time" >= s.start_time AND m."time" < s.end_time
    ) AS occupied
"""

# Only the count of changed bars and the changed bars near the live edge (to publish) come back:
# a full roll-up changes hundreds of thousands of bars that nobody needs in Python.
_PG_RESULT = f"""
, inserted AS (
    INSERT INTO market_bar ({BAR_COLUMNS}) SELECT {BAR_COLUMNS} FROM rolled WHERE NOT occupied
    RETURNING {BAR_COLUMNS}
), upserted AS (
    INSERT INTO market_bar ({BAR_COLUMNS}) SELECT {BAR_COLUMNS} FROM rolled WHERE occupied
    {UPSERT_TAIL}
), changed AS (
    SELECT * FROM inserted UNION ALL SELECT * FROM upserted
)
SELECT count(*), coalesce(json_agg(json_build_array({BAR_COLUMNS})) FILTER (WHERE "time" > %(live_after)s), '[]')
FROM changed
"""

POSTGRES_UTC = f"""
WITH spans AS MATERIALIZED (
    SELECT s.*, {_PG_OCCUPIED}
    FROM unnest(%(ids)s::bigint[], %(starts)s::timestamptz[], %(ends)s::timestamptz[])
        AS s(instrument_id, start_time, end_time)
), rolled AS (
    SELECT instrument_id, %(target)s::varchar AS timeframe, bucket AS "time", open, high, low, close, volume,
        trades::integer, vwap, bucket + %(step)s::interval <= %(now)s AS final, occupied
    FROM (
        SELECT s.instrument_id, s.occupied,
            date_bin(%(step)s::interval, b."time", TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket,
            {_PG_AGGREGATES}
        FROM spans s {_PG_SOURCE}
        GROUP BY 1, 2, 3
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
    SELECT instrument_id, %(target)s::varchar AS timeframe, label AS "time", open, high, low, close, volume,
        trades::integer, vwap, end_time <= %(now)s AS final, occupied
    FROM (
        SELECT s.instrument_id, s.label, s.end_time, s.occupied, {_PG_AGGREGATES}
        FROM spans s {_PG_SOURCE}
        GROUP BY 1, 2, 3, 4
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
