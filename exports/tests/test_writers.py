"""The pure writers: bars in, CSV / JSON Lines / Parquet bytes out, every number exactly as given."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from exports.naming import download_name
from exports.writers import (
    COLUMNS,
    CSV_HEADER,
    PARQUET_SCHEMA,
    BarChunk,
    csv_chunks,
    json_lines_chunks,
    parquet_chunks,
    write_parquet,
)

JAN_1 = 1_704_067_200  # 2024-01-01T00:00:00Z

# Values whose text is easy to get wrong: whole numbers, tiny and huge magnitudes, 17 significant
# digits, the results of arithmetic.
AWKWARD = [40000.0, 0.00001234, 0.1 + 0.2, 1 / 3, 123456789.12345679, 5e-324, 1e300, 2.0**53, 7.0, 0.1]


def chunk_of(rows: list[tuple[Any, ...]]) -> BarChunk:
    return BarChunk.from_rows(rows)


def awkward_rows() -> list[tuple[Any, ...]]:
    rows = []
    for i, value in enumerate(AWKWARD):
        trades = None if i % 3 == 0 else i * 11
        vwap = None if i % 4 == 0 else value * 1.0000001
        rows.append((JAN_1 + 60 * i, value, value * 2, value / 2, value, value * 3, trades, vwap, i % 2 == 0))
    return rows


def random_rows(count: int, seed: int = 1) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    prices = np.exp(rng.normal(0, 8, count))  # magnitudes from about 1e-10 to 1e10
    return [
        (
            JAN_1 + 60 * i,
            float(p),
            float(p * 1.01),
            float(p * 0.99),
            float(p),
            float(p * 7.3),
            i,
            float(p * 1.001),
            True,
        )
        for i, p in enumerate(prices)
    ]


def parse_csv(data: bytes) -> list[list[str]]:
    lines = data.decode().splitlines()
    return [line.split(",") for line in lines]


def test_csv_starts_with_the_header_and_has_one_line_per_bar():
    data = b"".join(csv_chunks([chunk_of(awkward_rows()[:4]), chunk_of(awkward_rows()[4:])]))

    assert data.startswith(CSV_HEADER)
    lines = parse_csv(data)
    assert lines[0] == list(COLUMNS)
    assert len(lines) == 1 + len(AWKWARD)
    assert lines[1][0] == "2024-01-01T00:00:00Z"
    assert lines[2][0] == "2024-01-01T00:01:00Z"


@pytest.mark.parametrize("rows", [awkward_rows(), random_rows(2000)], ids=["awkward", "random"])
def test_csv_cells_read_back_as_exactly_the_floats_given(rows):
    lines = parse_csv(b"".join(csv_chunks([chunk_of(rows)])))[1:]

    for line, row in zip(lines, rows, strict=True):
        assert [float(cell) for cell in line[1:6]] == list(row[1:6])
        assert (None if line[7] == "" else float(line[7])) == row[7]


def test_csv_writes_whole_floats_without_a_trailing_zero_as_postgresql_does():
    lines = parse_csv(
        b"".join(csv_chunks([chunk_of([(JAN_1, 40000.0, 40010.0, 39990.5, 40000.0, 3.0, 7, 10.0, True)])]))
    )

    assert lines[1] == ["2024-01-01T00:00:00Z", "40000", "40010", "39990.5", "40000", "3", "7", "10", "true"]


def test_csv_leaves_unknown_trades_and_vwap_empty_and_writes_final_as_a_word():
    lines = parse_csv(b"".join(csv_chunks([chunk_of([(JAN_1, 1.5, 2.5, 1.25, 2.0, 0.0, None, None, False)])])))

    assert lines[1] == ["2024-01-01T00:00:00Z", "1.5", "2.5", "1.25", "2", "0", "", "", "false"]


def test_csv_of_no_bars_is_the_header_alone():
    assert b"".join(csv_chunks([])) == CSV_HEADER
    assert b"".join(csv_chunks([BarChunk.empty()])) == CSV_HEADER


@pytest.mark.parametrize("rows", [awkward_rows(), random_rows(2000)], ids=["awkward", "random"])
def test_json_lines_hold_one_object_per_bar_with_exactly_the_values_given(rows):
    lines = b"".join(json_lines_chunks([chunk_of(rows)])).decode().splitlines()

    objects = [json.loads(line) for line in lines]
    assert [list(item) for item in objects] == [list(COLUMNS)] * len(rows)
    expected_times = [datetime.fromtimestamp(row[0], UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for row in rows]
    assert [item["time"] for item in objects] == expected_times
    assert [tuple(item.values())[1:] for item in objects] == [row[1:] for row in rows]


def test_json_lines_of_no_bars_are_empty():
    assert b"".join(json_lines_chunks([BarChunk.empty()])) == b""


def test_parquet_holds_the_schema_and_exactly_the_values_given_one_row_group_per_chunk():
    rows = awkward_rows()
    data = b"".join(parquet_chunks([chunk_of(rows[:6]), chunk_of(rows[6:])]))

    file = pq.ParquetFile(io.BytesIO(data))
    assert file.schema_arrow == PARQUET_SCHEMA
    assert file.metadata.num_row_groups == 2
    table = file.read().to_pylist()
    assert [tuple(item.values())[1:] for item in table] == [row[1:] for row in rows]
    assert [item["time"] for item in table] == [datetime.fromtimestamp(row[0], UTC) for row in rows]


def test_parquet_streamed_piece_by_piece_is_the_file_written_at_once(tmp_path):
    chunks = [chunk_of(random_rows(1000, seed=2)), chunk_of(random_rows(500, seed=3))]
    streamed = list(parquet_chunks(chunks))
    write_parquet(chunks, str(tmp_path / "whole.parquet"))

    assert len(streamed) > 2  # pieces went out before the footer
    assert b"".join(streamed) == (tmp_path / "whole.parquet").read_bytes()


def test_parquet_of_no_bars_is_a_readable_file_without_rows():
    data = b"".join(parquet_chunks([]))

    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_rows == 0


def test_download_names_say_what_is_inside_and_keep_to_safe_characters():
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, 12, 30, tzinfo=UTC)

    assert (
        download_name("binance", "BTC/USDT", "1m", start, end, "csv")
        == "binance_BTC-USDT_1m_20240101T0000Z_20240102T1230Z.csv"
    )
    assert download_name("yahoo", "^GSPC", "1d", None, None, "json") == "yahoo_GSPC_1d_first_last.jsonl"
    assert download_name("x", 'a"b\r\n;c', "1h", None, end, "parquet") == "x_a-b-c_1h_first_20240102T1230Z.parquet"
