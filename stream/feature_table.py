"""Feature snapshots as table rows: the column types of every feature, and maps and vectors exploded.

Pure (no Redis, no pyarrow): `fsp export`, `stream.client.features_frame` and the tests share it. A table
has a fixed list of columns, decided before the first row is written, because a Parquet file has one
schema for all its row groups and a CSV one header. So the type of every feature is declared (SPEC §4):
each dataset declares its own (Dataset.columns, e.g. datasets/storj/features.py), rather than have them
guessed from whichever snapshot comes first (a null `created_at` in the first snapshot would make a
column of nulls). A feature the declaration does not know is left out and reported
(`Table.unknown_fields`), never guessed; so is a map key that appears after an exploded table's columns
were decided (a worker writing while the export reads).

Exploding (`--explode`): a map becomes one column per key (`upload_bytes_by_month-2021-04`, the
notebook's `uploads-2021-04`), a fixed-length vector one column per position named by what the position
means (`bytes_by_hour_weekday-07` is 07:00-08:00 local time, `bytes_by_week_slot-mon-08` Monday
08:00-10:00, `inter_event_hist-0.1s` the bin that starts at 0.1 s), a record one column per field
(`last_session-start`, `_meta-version`). Lists of varying length (dates, months, wallets, domains) stay
lists. A key an entity lacks is null: "no row counted", which a map keeps apart from a sum of 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import orjson

import datasets

SESSIONS = "sessions"  # the table of session records (ucn: SPEC §4, Sessions): a row per closed session
SEPARATOR = "-"  # between a feature and a key of it in an exploded column's name


@dataclass(frozen=True)
class Kind:
    """The type of a column's cells. `base`: int, float, str, bool, date, timestamp, list, map, record;
    `item`: of a list's items or a map's values; `fields`: a record's; `labels`: a fixed-length list's
    positions, which explode by name."""

    base: str
    item: "Kind | None" = None
    fields: tuple[tuple[str, "Kind"], ...] = ()
    labels: tuple[str, ...] = ()


INT, FLOAT, STR, BOOL = Kind("int"), Kind("float"), Kind("str"), Kind("bool")
DATE, TIMESTAMP = Kind("date"), Kind("timestamp")


def list_of(item: Kind, labels: tuple[str, ...] = ()) -> Kind:
    return Kind("list", item=item, labels=labels)


def map_of(item: Kind) -> Kind:
    return Kind("map", item=item)


def record(*fields: tuple[str, Kind]) -> Kind:
    return Kind("record", fields=fields)


# What every snapshot's `_meta` holds (a dataset may add fields: ucn's late_events).
META = record(("version", INT), ("updated_at", TIMESTAMP), ("events", INT), ("watermark", TIMESTAMP))


def tables() -> list[tuple[str, str]]:
    """Every (dataset, table) that can be exported: the snapshot entities, and the session lists (ucn's
    sessions), as each dataset declares their columns."""
    return [(dataset, entity) for dataset in datasets.names() for entity in datasets.get(dataset).columns]


def features(dataset: str, entity: str) -> tuple[tuple[str, Kind], ...]:
    """The features of a table of `dataset` (an entity kind or SESSIONS) in column order, with their kinds."""
    return datasets.get(dataset).columns[entity]


def map_fields(dataset: str, entity: str) -> list[str]:
    """The features whose columns, exploded, depend on the keys the entities hold."""
    return [name for name, kind in features(dataset, entity) if kind.base == "map"]


@dataclass(frozen=True)
class Column:
    """A column of the table: its name and kind, and where its value is: `path` from the snapshot (the
    feature, then a map key, a list position or a record field when exploded)."""

    name: str
    kind: Kind
    path: tuple = ()


@dataclass
class Table:
    """The columns of one export: the id first (entity tables), then every feature in declared order."""

    dataset: str
    entity: str
    columns: list[Column]
    map_keys: dict[str, set] | None = None  # exploded: the keys of each map that have a column
    unknown_fields: set[str] = field(default_factory=set)  # seen in a snapshot, without a column: left out

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def row(self, entity_id, features: dict) -> dict:
        """One snapshot (`stream.client.decode_snapshot`) or session record as {column: typed value}."""
        self.unknown_fields.update(name for name in features if name not in self._declared)
        for name, keys in (self.map_keys or {}).items():  # a key that came after the columns were decided
            self.unknown_fields.update(f"{name}{SEPARATOR}{key}" for key in features.get(name) or () if key not in keys)
        out = {}
        for column in self.columns:
            try:
                out[column.name] = typed(_at(features, column.path), column.kind) if column.path else _id(
                    entity_id, column.kind)
            except WrongType as exc:
                raise WrongType(f"{self.dataset} {self.entity} {entity_id} {column.name}: {exc}") from None
        return out

    def __post_init__(self):
        self._declared = {name for name, _ in features(self.dataset, self.entity)}


def table(dataset: str, entity: str, explode: bool = False, map_keys: dict[str, set] | None = None) -> Table:
    """The table of `dataset`/`entity`; with `explode`, `map_keys` (map feature -> every key some entity
    holds, see `map_fields`) gives the columns of the maps."""
    columns = [] if entity == SESSIONS else [Column("id", datasets.get(dataset).id_kind)]
    map_keys = {name: set((map_keys or {}).get(name, ())) for name in map_fields(dataset, entity)} if explode else None
    for name, kind in features(dataset, entity):
        columns += _exploded(name, kind, (name,), map_keys.get(name, ())) if explode else [Column(name, kind, (name,))]
    return Table(dataset, entity, columns, map_keys)


def _exploded(name: str, kind: Kind, path: tuple, keys) -> list[Column]:
    if kind.base == "map":
        return [Column(f"{name}{SEPARATOR}{key}", kind.item, (*path, key)) for key in sorted(keys)]
    if kind.base == "list" and kind.labels:
        return [Column(f"{name}{SEPARATOR}{label}", kind.item, (*path, index)) for index, label in
                enumerate(kind.labels)]
    if kind.base == "record":
        return [Column(f"{name}{SEPARATOR}{inner}", inner_kind, (*path, inner)) for inner, inner_kind in kind.fields]
    return [Column(name, kind, path)]


def _at(value, path: tuple):
    """The value at `path` in a snapshot; None where a map lacks the key, a list is short or a record
    is null."""
    for step in path:
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and isinstance(step, int):
            value = value[step] if step < len(value) else None
        else:
            return None
    return value


class WrongType(ValueError):
    """A feature value that does not have its declared kind."""


def _id(entity_id: str, kind: Kind):
    """An id as Redis keys it (text), as its dataset's kind."""
    if kind is INT:
        try:
            return int(entity_id)
        except ValueError:
            raise WrongType(f"expected a whole-number id, got {entity_id!r}") from None
    return entity_id


def typed(value, kind: Kind):
    """A JSON value of a snapshot as a cell of `kind`: dates and timestamps parsed, a record's fields
    (a dict, or a pair such as a top domain's [domain, count]) named, numbers checked."""
    if value is None:
        return None
    base = kind.base
    if base == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base == "str":
        if isinstance(value, str):
            return value
    elif base == "bool":
        if isinstance(value, bool):
            return value
    elif base in ("date", "timestamp"):
        if isinstance(value, str):
            try:
                return (date if base == "date" else datetime).fromisoformat(value)
            except ValueError:
                pass
    elif base == "list":
        if isinstance(value, list):
            return [typed(item, kind.item) for item in value]
    elif base == "map":
        if isinstance(value, dict):
            return {str(key): typed(item, kind.item) for key, item in value.items()}
    elif base == "record":
        if isinstance(value, dict):
            return {name: typed(value.get(name), inner) for name, inner in kind.fields}
        if isinstance(value, list) and len(value) == len(kind.fields):
            return {name: typed(item, inner) for (name, inner), item in zip(kind.fields, value)}
    raise WrongType(f"expected {describe(kind)}, got {orjson.dumps(value).decode()[:80]}")


def describe(kind: Kind) -> str:
    if kind.base in ("list", "map"):
        return f"{kind.base}<{describe(kind.item)}>"
    if kind.base == "record":
        return "record{" + ", ".join(name for name, _ in kind.fields) + "}"
    return kind.base


def csv_cell(value) -> str:
    """A typed cell as CSV text: empty for null, ISO for dates and times, JSON for lists, maps, records."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return str(value) if not isinstance(value, float) else repr(value)


def frame(shape: Table, rows: list[dict]):
    """Rows of `shape` as a pandas DataFrame: whole numbers as nullable Int64 (bytes stay exact where a
    column has nulls), booleans as nullable boolean, timestamps as datetime64[us]; dates, maps, lists and
    records stay Python objects."""
    import pandas as pd

    out = pd.DataFrame(rows, columns=shape.names)
    dtypes = {"int": "Int64", "float": "float64", "bool": "boolean", "str": "object", "timestamp": "datetime64[us]"}
    for column in shape.columns:
        if column.kind.base in dtypes:
            out[column.name] = out[column.name].astype(dtypes[column.kind.base])
    return out
