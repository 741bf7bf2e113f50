"""The storj source (SPEC §1): its tables, which files of a dump hold them, and how its rows are told apart.

The dump is per region: `{region}_{file}.csv` (also under bucket_data/), `file` being a table's
`file_stem`. Rows have no id of their own: an event's id is its content (contract.rows.content_id), and
rows of one event time keep their file and line order, so that "the one published later wins" means the
later file, then the later row. Ids and hashes are compared in lower case (the dumps mix cases).
"""
from __future__ import annotations

from typing import Mapping

from contract.tables import TableSpec, by_name, table_spec

TABLES = by_name(
    table_spec("storj", "users", "id", "created_at", file_stem="users_a", texts=("id", "email_hash")),
    table_spec("storj", "projects", "project_id", "created_at", ("usage_limit", "bandwidth_limit"),
               file_stem="projects", texts=("project_id", "user_id")),
    table_spec("storj", "bbr", "project_id", "interval_start", ("action", "inline", "settled"), file_stem="bbr",
               texts=("project_id",)),
    table_spec("storj", "bst", "project_id", "interval_start", ("inline", "remote"), file_stem="bst",
               texts=("project_id",)),
    table_spec("storj", "nodes", "id", "created_at", ("free_disk", "piece_count"), file_stem="nodes_a",
               texts=("id", "wallet", "email_hash"), scalars=("last_contact_success", "disqualified", "suspended")),
    table_spec("storj", "payments", "node_id", "period", ("amount",), file_stem="node_payments",
               texts=("node_id",)),
    table_spec("storj", "receipts", "node_id", "period", ("amount",), file_stem="node_payments_receipt",
               texts=("node_id",)),
)


def is_id_column(name: str) -> bool:
    """Columns of ids and hashes, whose values are compared in lower case."""
    return name == "id" or name.endswith("_id") or name.endswith("_hash") or name in ("wallet", "receipt")


def table_of_file(tables: Mapping[str, TableSpec], stem: str) -> TableSpec | None:
    """`{region}_{file_stem}`: the part after the first underscore names the table."""
    _, sep, rest = stem.partition("_")
    if not sep:
        return None
    return next((spec for spec in tables.values() if spec.file_stem == rest), None)
