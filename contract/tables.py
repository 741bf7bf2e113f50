"""Source tables of every dataset (SPEC §1): routing key, event time, typed columns."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TableSpec:
    dataset: str
    name: str
    key: str
    time: str | None = None
    int_cols: frozenset = field(default_factory=frozenset)
    bool_cols: frozenset = field(default_factory=frozenset)
    file_stem: str | None = None
    aliases: tuple = ()

    @property
    def topic(self) -> str:
        return f"{self.dataset}.{self.name}"

    @property
    def is_reference(self) -> bool:
        """Tables without an event time are published before any event."""
        return self.time is None


def _t(dataset, name, key, time=None, ints=(), bools=(), file_stem=None, aliases=()):
    return TableSpec(dataset, name, key, time, frozenset(ints), frozenset(bools), file_stem, tuple(aliases))


STORJ = {
    t.name: t
    for t in (
        _t("storj", "users", "id", "created_at", file_stem="users_a"),
        _t("storj", "projects", "project_id", "created_at", ("usage_limit", "bandwidth_limit"), file_stem="projects"),
        _t("storj", "bbr", "project_id", "interval_start", ("action", "inline", "settled"), file_stem="bbr"),
        _t("storj", "bst", "project_id", "interval_start", ("inline", "remote"), file_stem="bst"),
        _t("storj", "nodes", "id", "created_at", ("free_disk", "piece_count"), file_stem="nodes_a"),
        _t("storj", "payments", "node_id", "period", ("amount",), file_stem="node_payments"),
        _t("storj", "receipts", "node_id", "period", ("amount",), file_stem="node_payments_receipt"),
    )
}

_TRAFFIC = ("id", "devid", "packets_in", "bytes_in", "packets_out", "bytes_out")
UCN = {
    t.name: t
    for t in (
        _t("ucn", "users", "id", ints=("id",)),
        _t("ucn", "devices", "id", ints=("id",), bools=("shared",)),
        _t("ucn", "user_devices", "device_id", ints=("user_id", "device_id")),
        _t("ucn", "devicetraffic", "devid", "ts", _TRAFFIC),
        _t("ucn", "deviceapptraffic", "devid", "ts", _TRAFFIC + ("dstport",)),
        _t("ucn", "httpreqs", "devid", "ts", ("id", "devid"), ("user_url",), aliases=("httpreqs2",)),
        _t("ucn", "dnsreqs", "devid", "ts", ("id", "devid"), ("user_req",)),
        _t("ucn", "locations", "devid", "entertime", ("id", "devid")),
    )
}

DATASETS = {"storj": STORJ, "ucn": UCN}


def table(dataset: str, name: str) -> TableSpec:
    """Look a table up by its name or an alias (`httpreqs2` is `httpreqs`)."""
    tables = DATASETS[dataset]
    if name in tables:
        return tables[name]
    for spec in tables.values():
        if name in spec.aliases:
            return spec
    raise KeyError(f"unknown table {dataset}.{name}")


def topics(dataset: str) -> list[str]:
    """Every source topic of a dataset, aliases included (live feeds may use them)."""
    names = []
    for spec in DATASETS[dataset].values():
        names.append(spec.topic)
        names.extend(f"{dataset}.{alias}" for alias in spec.aliases)
    return names


def table_of_topic(topic: str) -> TableSpec:
    dataset, _, name = topic.partition(".")
    return table(dataset, name)
