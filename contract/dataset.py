"""What a dataset is to the engine: one frozen description, looked up by name (`datasets.get`).

Everything that makes a dataset lives in its folder under `datasets/` and is
handed to the engine here: its source tables, how a row's event id is made
and how rows of one instant are ordered, which CSV files hold which table,
its stages and their state, what it writes to Redis, its generator, its
independent batch computation, its export columns and its report. The engine (contract, replay, stream, verify,
serving, fsp) asks for these by dataset name and never tests a name itself.

Pure, like the rest of `contract`: a description holds functions and
classes; those that pull in pandas or matplotlib (generator, batch
computation, report) are given as `lazy("module:function")`, imported at
their first call.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # contract.tables looks datasets up through the registry, which imports this module
    from .tables import TableSpec


def keep_read_order(spec: TableSpec, row) -> tuple:
    """Rows of one event time keep the order they were read in (file, then line): the tie-break of a
    dataset whose ids say nothing of order."""
    return ("", 0)


def named(tables: Mapping[str, TableSpec], name: str) -> TableSpec | None:
    """The table called `name`, or whose alias it is (`httpreqs2` is `httpreqs`); None when none is."""
    if name in tables:
        return tables[name]
    return next((spec for spec in tables.values() if name in spec.aliases), None)


def one_file_per_table(tables: Mapping[str, TableSpec], stem: str) -> TableSpec | None:
    """`{table}.csv` (or an alias's name, `httpreqs2.csv`) holds that table; other files none."""
    return named(tables, stem)


def no_id_columns(column: str) -> bool:
    """No text column is compared in lower case."""
    return False


def lazy(path: str) -> Callable:
    """The function `module:name`, imported at its first call (a generator, a batch computation or a report
    pulls in pandas or matplotlib, which a worker never needs)."""
    module, _, name = path.partition(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = path
    return call


@dataclass(frozen=True)
class Dataset:
    name: str
    tables: Mapping[str, TableSpec]  # source tables by name (SPEC §1); topics are `{name}.{table}`
    # (spec, normalised values) -> the row's de-duplication id; raise contract.rows.BadRow when it has none
    event_id: Callable[[TableSpec, dict], str]
    stages: tuple[type, ...]  # stream.runtime.stages.Stage subclasses, one instance each per worker
    state_tables: tuple[str, ...]  # the worker's keyed-state tables (each with its changelog)
    internal_topics: tuple[str, ...]  # topics between its stages, created with the source topics
    snapshot_entities: tuple[str, ...]  # entity kinds with a snapshot in Redis (contract.keys.feature_key)
    final_stage: str  # the stage whose end-of-run marks say a run is all in Redis (replay --wait)
    # the independent batch computation (verify): source (CSV folder or database URL) -> {entity: {id:
    # features}}, plus "sessions" {user id: records, newest first} for a dataset with session lists
    compute: Callable[[str], dict]
    # export (stream.feature_table): entity kind, or "sessions" for the session lists -> its features in
    # column order, ((feature, Kind), ...); and the Kind of the entity ids
    columns: Mapping[str, tuple] = field(default_factory=dict)
    id_kind: Any = None
    session_lists: tuple[str, ...] = ()  # entity kinds that also keep their closed sessions in Redis
    is_id_column: Callable[[str], bool] = no_id_columns  # text columns of ids, compared in lower case
    # (spec, Row) -> what orders rows of one event time after the time (replay.merge); the same shape for
    # every table of the dataset
    tie_break: Callable[[TableSpec, Any], tuple] = keep_read_order
    # (tables, a CSV file's name without .csv) -> the table the file holds, or None (not one of ours)
    table_of_file: Callable[[Mapping[str, TableSpec], str], TableSpec | None] = one_file_per_table
    generate: Callable | None = None  # (out: folder or database URL, *, seed, scale, bad_rows) -> summary
    report: Callable | None = None  # (redis client, key prefix, user id or None) -> stream.report.Report
    report_per_user: bool = False  # whether its report draws one user too (`fsp report --user`)

    def __post_init__(self):
        strays = [spec.name for spec in self.tables.values() if spec.dataset != self.name]
        if strays:
            raise ValueError(f"tables of another dataset in {self.name}: {', '.join(strays)}")
        if self.final_stage not in {stage.name for stage in self.stages}:
            raise ValueError(f"{self.name}: no stage {self.final_stage!r} to be the final stage")
        if self.columns and self.id_kind is None:
            raise ValueError(f"{self.name}: export columns without the kind of the ids (id_kind)")

    def file_table(self, stem: str) -> TableSpec | None:
        """The table a CSV file named `{stem}.csv` holds, or None."""
        return self.table_of_file(self.tables, stem)
