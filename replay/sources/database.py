"""Database sources (SQLAlchemy URL: postgresql://..., sqlite:///...).

Each table is streamed with a server-side cursor in chunks, already sorted by
the database on (event time, id), so a k-way merge gives the replay's event
order without loading a table into memory. Tables of a dataset that do not
exist are skipped; `httpreqs2` is read as `httpreqs`.
"""
from __future__ import annotations

import datetime as dt
import decimal

import sqlalchemy as sa

import datasets
from contract import tables
from contract.rows import BadRow, normalise

from .base import BadRecord, SourceRow

CHUNK = 20_000


def engine_for(url: str):
    """SQLAlchemy engine; a bare postgresql:// URL uses psycopg2 (the driver this project installs)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    return sa.create_engine(url)


def _plain(value):
    """Database values as the wire format has them (JSON types, ISO timestamps)."""
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat() if value.tzinfo is None else \
            value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def table_names(engine, dataset: str) -> list[tuple[str, tables.TableSpec]]:
    existing = set(sa.inspect(engine).get_table_names())
    found = []
    for spec in datasets.get(dataset).tables.values():
        for name in (spec.name, *spec.aliases):
            if name in existing:
                found.append((name, spec))
    return found


def count_rows(url: str, dataset: str) -> int:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return sum(conn.execute(sa.text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
                       for name, _ in table_names(engine, dataset))
    finally:
        engine.dispose()


def read_table(engine, name: str, spec: tables.TableSpec, where: str = "", params: dict | None = None, keep=None,
               columns: list | None = None):
    """Yield SourceRow / BadRecord of one table, in (event time, id) order.

    Follow mode (replay.follow) reads only the rows past its cursor: `where` is an SQL condition with
    `params`, `keep(record, item)` says whether a row is new (the record as the driver gives it), and
    `columns` (the table's, when known) spares a look at the catalog at every poll."""
    columns = columns or [c["name"] for c in sa.inspect(engine).get_columns(name)]
    order = [c for c in (spec.time, "id") if c and c in columns]
    sql = f'SELECT * FROM "{name}"' + (f" WHERE {where}" if where else "") + \
        (" ORDER BY " + ", ".join(f'"{c}"' for c in order) if order else "")
    with engine.connect().execution_options(stream_results=True, yield_per=CHUNK) as conn:
        for record in conn.execute(sa.text(sql), params or {}):
            raw = {k: _plain(v) for k, v in record._mapping.items()}
            origin = f"{name}:{raw.get('id', raw.get(spec.key))}"
            try:
                item = SourceRow(spec, normalise(spec, raw), origin)
            except BadRow as exc:
                item = BadRecord(spec.dataset, spec.name, origin, str(exc), repr(raw))
            if keep is None or keep(record._mapping, item):
                yield item


def database_streams(url: str, dataset: str) -> list:
    """One lazy stream per table, each in (event time, id) order, for a k-way merge."""
    engine = engine_for(url)
    found = table_names(engine, dataset)
    if not found:
        engine.dispose()
        raise FileNotFoundError(f"no {dataset} tables in {url}")
    return [read_table(engine, name, spec) for name, spec in found]


def read_database(url: str, dataset: str):
    """Every row of every table of the dataset, one table after the other."""
    for stream in database_streams(url, dataset):
        yield from stream
