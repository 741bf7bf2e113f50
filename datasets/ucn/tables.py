"""The ucn source (SPEC §1): its tables, one file each (`{table}.csv`), and how its rows are told apart.

Every row but a device link has an integer `id` of its table: its event id is `table:id`, a link's
`user_devices:user:device`. Rows of one event time are ordered by table, then id: the order of the
study's own tables, whatever order its files were read in.
"""
from __future__ import annotations

from contract.rows import BadRow
from contract.tables import TableSpec, by_name, table_spec

_TRAFFIC = ("id", "devid", "packets_in", "bytes_in", "packets_out", "bytes_out")
TABLES = by_name(
    table_spec("ucn", "users", "id", ints=("id",), texts=("username", "country")),
    table_spec("ucn", "devices", "id", ints=("id",), bools=("shared",), texts=("platform",)),
    table_spec("ucn", "user_devices", "device_id", ints=("user_id", "device_id")),
    table_spec("ucn", "devicetraffic", "devid", "ts", _TRAFFIC),
    table_spec("ucn", "deviceapptraffic", "devid", "ts", _TRAFFIC + ("dstport",), texts=("service",)),
    table_spec("ucn", "httpreqs", "devid", "ts", ("id", "devid"), ("user_url",), aliases=("httpreqs2",),
               texts=("req_url_host",)),
    table_spec("ucn", "dnsreqs", "devid", "ts", ("id", "devid"), ("user_req",), texts=("query",)),
    table_spec("ucn", "locations", "devid", "entertime", ("id", "devid"), texts=("name", "exittime")),
)


def event_id(spec: TableSpec, values: dict) -> str:
    if spec.name == "user_devices":
        user_id, device_id = values.get("user_id"), values.get("device_id")
        if user_id is None or device_id is None:
            raise BadRow("missing user_id or device_id")
        return f"user_devices:{user_id}:{device_id}"
    row_id = values.get("id")
    if row_id is None:
        raise BadRow("missing id")
    return f"{spec.name}:{row_id}"


def tie_break(spec: TableSpec, row) -> tuple:
    return (spec.name, row.values.get("id") or 0)
