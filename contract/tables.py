"""Source tables (SPEC §1): routing key, event time, typed columns. Each dataset declares its own
(`datasets/{name}/tables.py`); they are looked up here by dataset and name."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import datasets

from .dataset import named


@dataclass(frozen=True)
class TableSpec:
    dataset: str
    name: str
    key: str
    time: str | None = None
    int_cols: frozenset = field(default_factory=frozenset)  # integers within 64 bits
    bool_cols: frozenset = field(default_factory=frozenset)
    file_stem: str | None = None  # the name a dump gives the table's files, for a dataset's table_of_file (storj)
    aliases: tuple = ()
    text_cols: frozenset = field(default_factory=frozenset)  # text (JSON strings) only
    scalar_cols: frozenset = field(default_factory=frozenset)  # any JSON scalar (read leniently)

    @cached_property
    def topic(self) -> str:
        """Made once per table: the replay asks for it at every row."""
        return f"{self.dataset}.{self.name}"

    @property
    def is_reference(self) -> bool:
        """Tables without an event time are published before any event."""
        return self.time is None


def table_spec(dataset, name, key, time=None, ints=(), bools=(), file_stem=None, aliases=(), texts=(),
               scalars=()) -> TableSpec:
    """A table of `dataset` keyed by column `key`, with its event time in column `time` (None: a reference
    table) and the columns the features read by type.

    Every column the features read has a type: the key, the event time, and the columns given here. A
    value of another type makes the row a bad row (a dead letter), so that no wrong type reaches the
    features (SPEC §1). Other columns are carried along only when they are JSON scalars (contract.rows)."""
    return TableSpec(dataset, name, key, time, frozenset(ints), frozenset(bools), file_stem, tuple(aliases),
                     frozenset(texts), frozenset(scalars))


def by_name(*specs: TableSpec) -> dict[str, TableSpec]:
    return {spec.name: spec for spec in specs}


def table(dataset: str, name: str) -> TableSpec:
    """Look a table up by its name or an alias (`httpreqs2` is `httpreqs`)."""
    spec = named(datasets.get(dataset).tables, name)
    if spec is None:
        raise KeyError(f"unknown table {dataset}.{name}")
    return spec


def topics(dataset: str) -> list[str]:
    """Every source topic of a dataset, aliases included (live feeds may use them)."""
    names = []
    for spec in datasets.get(dataset).tables.values():
        names.append(spec.topic)
        names.extend(f"{dataset}.{alias}" for alias in spec.aliases)
    return names


def table_of_topic(topic: str) -> TableSpec:
    dataset, _, name = topic.partition(".")
    return table(dataset, name)
