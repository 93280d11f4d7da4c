"""Features for machine learning, computed from bars, and their export to Parquet. Pure: no Django imports.

Each feature (`feature_catalogue.py`) is a name, a description, a formula (docs/ml_features.md lists
them all) and a function of `FeatureInputs`. Every function looks only backwards: the row of a bar
uses that bar and earlier ones, so a row is known when its bar closes (a test appends future bars
and checks that no earlier value moves). Rows before a feature's warm-up are NaN.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from indicators.compute import Context
from indicators.feature_catalogue import FEATURES, FEATURES_BY_NAME, feature_history_bars
from indicators.feature_inputs import FeatureInputs
from indicators.series import Bars

__all__ = ["FEATURES", "FEATURES_BY_NAME", "compute_features", "feature_history_bars", "parquet_bytes", "write_parquet"]


def compute_features(bars: Bars, context: Context | None = None, names: list[str] | None = None) -> pd.DataFrame:
    """One row per bar (indexed by its UTC open time), one float64 column per feature."""
    inputs = FeatureInputs(bars, context or Context())
    chosen = FEATURES if names is None else tuple(FEATURES_BY_NAME[name] for name in names)
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = {feature.name: np.asarray(feature.fn(inputs), dtype=np.float64) for feature in chosen}
    frame = pd.DataFrame(columns, index=pd.DatetimeIndex(inputs.wall_time, name="time"))
    return frame.replace([np.inf, -np.inf], np.nan)


def write_parquet(frame: pd.DataFrame, destination: str | Path | BinaryIO, **metadata: str) -> None:
    """The feature matrix as Parquet; each column's description and formula go in its field metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=True)
    fields = []
    for schema_field in table.schema:
        feature = FEATURES_BY_NAME.get(schema_field.name)
        if feature is not None:
            schema_field = schema_field.with_metadata({"description": feature.description, "formula": feature.formula})
        fields.append(schema_field)
    schema = pa.schema(
        fields, metadata={**(table.schema.metadata or {}), **{k: v.encode() for k, v in metadata.items()}}
    )
    pq.write_table(table.cast(schema), destination)


def parquet_bytes(frame: pd.DataFrame, **metadata: str) -> bytes:
    buffer = io.BytesIO()
    write_parquet(frame, buffer, **metadata)
    return buffer.getvalue()
