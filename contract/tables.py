"""Source tables of every dataset (SPEC §1): routing key, event time, typed columns."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TableSpec:
    dataset: str
    name: str
    key: str
    time: str | None = None
    int_cols: frozenset = field(default_factory=frozenset)  # integers within 64 bits
    bool_cols: frozenset = field(default_factory=frozenset)
    file_stem: str | None = None
    aliases: tuple = ()
    text_cols: frozenset = field(default_factory=frozenset)  # text (JSON strings) only
    scalar_cols: frozenset = field(default_factory=frozenset)  # any JSON scalar (read leniently)

    @property
    def topic(self) -> str:
        return f"{self.dataset}.{self.name}"

    @property
    def is_reference(self) -> bool:
        """Tables without an event time are published before any event."""
        return self.time is None


def _t(dataset, name, key, time=None, ints=(), bools=(), file_stem=None, aliases=(), texts=(), scalars=()):
    return TableSpec(dataset, name, key, time, frozenset(ints), frozenset(bools), file_stem, tuple(aliases),
                     frozenset(texts), frozenset(scalars))


# Every column the features read has a type: the key, the event time, and the columns below. A value
# of another type makes the row a bad row (a dead letter), so that no wrong type reaches the features
# (SPEC §1). Other columns are carried along only when they are JSON scalars (contract.rows).


STORJ = {
    t.name: t
    for t in (
        _t("storj", "users", "id", "created_at", file_stem="users_a", texts=("id", "email_hash")),
        _t("storj", "projects", "project_id", "created_at", ("usage_limit", "bandwidth_limit"), file_stem="projects",
           texts=("project_id", "user_id")),
        _t("storj", "bbr", "project_id", "interval_start", ("action", "inline", "settled"), file_stem="bbr",
           texts=("project_id",)),
        _t("storj", "bst", "project_id", "interval_start", ("inline", "remote"), file_stem="bst",
           texts=("project_id",)),
        _t("storj", "nodes", "id", "created_at", ("free_disk", "piece_count"), file_stem="nodes_a",
           texts=("id", "wallet", "email_hash"), scalars=("last_contact_success", "disqualified", "suspended")),
        _t("storj", "payments", "node_id", "period", ("amount",), file_stem="node_payments", texts=("node_id",)),
        _t("storj", "receipts", "node_id", "period", ("amount",), file_stem="node_payments_receipt",
           texts=("node_id",)),
    )
}

_TRAFFIC = ("id", "devid", "packets_in", "bytes_in", "packets_out", "bytes_out")
UCN = {
    t.name: t
    for t in (
        _t("ucn", "users", "id", ints=("id",), texts=("username", "country")),
        _t("ucn", "devices", "id", ints=("id",), bools=("shared",), texts=("platform",)),
        _t("ucn", "user_devices", "device_id", ints=("user_id", "device_id")),
        _t("ucn", "devicetraffic", "devid", "ts", _TRAFFIC),
        _t("ucn", "deviceapptraffic", "devid", "ts", _TRAFFIC + ("dstport",), texts=("service",)),
        _t("ucn", "httpreqs", "devid", "ts", ("id", "devid"), ("user_url",), aliases=("httpreqs2",),
           texts=("req_url_host",)),
        _t("ucn", "dnsreqs", "devid", "ts", ("id", "devid"), ("user_req",), texts=("query",)),
        _t("ucn", "locations", "devid", "entertime", ("id", "devid"), texts=("name", "exittime")),
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
