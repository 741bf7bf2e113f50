"""`fsp export`: the snapshots of an entity kind (or ucn's sessions) from Redis as one Parquet or CSV file.

Memory stays bounded whatever the store's size: the ids (SSCAN, ~100 bytes each), one page of snapshots
(stream.client.PAGE) and one row group (ROW_GROUP_ROWS rows) at a time. The file is written beside its
final name and renamed at the end, so a failed export never leaves half a table under that name.
"""
from __future__ import annotations

import csv
import os
import sys
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from stream.client import scan_ids, table_pages
from stream.feature_table import SESSIONS, Kind, Table, csv_cell

ROW_GROUP_ROWS = 10_000  # rows a Parquet row group (a CSV write) holds: the bound on the rows in memory
FORMATS = ("parquet", "csv")


def arrow_type(kind: Kind) -> pa.DataType:
    scalar = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_(),
              "date": pa.date32(), "timestamp": pa.timestamp("us")}
    if kind.base in scalar:
        return scalar[kind.base]
    if kind.base == "list":
        return pa.list_(arrow_type(kind.item))
    if kind.base == "map":
        return pa.map_(pa.string(), arrow_type(kind.item))
    return pa.struct([(name, arrow_type(inner)) for name, inner in kind.fields])


def arrow_schema(shape: Table) -> pa.Schema:
    return pa.schema([(column.name, arrow_type(column.kind)) for column in shape.columns])


def format_for(out: str, given: str | None) -> str:
    """The format asked for, else CSV for a `.csv` file, else Parquet."""
    if given:
        return given
    return "csv" if out.lower().endswith(".csv") else "parquet"


@dataclass
class ExportSummary:
    rows: int
    columns: int
    seconds: float
    bytes: int
    unknown_fields: list[str]

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def export_table(r, dataset: str, entity: str, out: str, fmt: str = "parquet", prefix: str = "",
                 ids: list[str] | None = None, explode: bool = False, progress: bool = True) -> ExportSummary:
    started = time.monotonic()
    if ids is None:
        ids = scan_ids(r, dataset, "user" if entity == SESSIONS else entity, prefix)
    shape, pages = table_pages(r, dataset, entity, ids, prefix, explode)
    partial = f"{out}.partial"
    bar = tqdm(desc=f"export {dataset} {entity}", unit=" rows", total=None if entity == SESSIONS else len(ids),
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    rows = 0
    try:
        writer = ParquetRows(partial, shape) if fmt == "parquet" else CsvRows(partial, shape)
        with writer:
            held: list[dict] = []
            for page in pages:
                held += page
                bar.update(len(page))
                if len(held) >= ROW_GROUP_ROWS:
                    writer.write(held)
                    rows += len(held)
                    held = []
            writer.write(held)
            rows += len(held)
        os.replace(partial, out)
    finally:
        bar.close()
        if os.path.exists(partial):
            os.remove(partial)
    return ExportSummary(rows, len(shape.columns), time.monotonic() - started, os.path.getsize(out),
                         sorted(shape.unknown_fields))


class ParquetRows:
    """Rows to a Parquet file (zstd), one row group per write."""

    def __init__(self, path: str, shape: Table):
        self.schema = arrow_schema(shape)
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")

    def write(self, rows: list[dict]) -> None:
        if rows:  # a file of no row groups still holds the schema: an empty table reads back typed
            self.writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.writer.close()


class CsvRows:
    """Rows to a CSV file with a header: nested values as JSON, null as an empty cell."""

    def __init__(self, path: str, shape: Table):
        self.names = shape.names
        self.handle = open(path, "w", newline="", encoding="utf-8")
        self.csv = csv.writer(self.handle)
        self.csv.writerow(self.names)

    def write(self, rows: list[dict]) -> None:
        self.csv.writerows([csv_cell(row[name]) for name in self.names] for row in rows)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()
