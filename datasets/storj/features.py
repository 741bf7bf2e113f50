"""The columns of storj's exports (stream.feature_table): every feature of a snapshot with its type (SPEC §4)."""
from __future__ import annotations

from stream.feature_table import BOOL, DATE, FLOAT, INT, META, STR, TIMESTAMP, list_of, map_of

ID_KIND = STR  # ids are hex text
COLUMNS = {
    "user": (
        ("email_hash", STR), ("created_at", DATE), ("projects", INT), ("project_created_dates", list_of(DATE)),
        ("tier", STR), ("bandwidth_limit_bytes", INT), ("usage_limit_bytes", INT), ("uploads", INT),
        ("downloads", INT), ("upload_bytes_by_month", map_of(INT)), ("download_bytes_by_month", map_of(INT)),
        ("first_activity_at", TIMESTAMP), ("last_activity_at", TIMESTAMP), ("storage_bytes", INT),
        ("storage_updated_at", TIMESTAMP), ("over_bandwidth_months", list_of(STR)), ("over_storage_limit", BOOL),
        ("usage_sessions_count", INT), ("usage_sessions_seconds", FLOAT), ("operator_nodes", INT),
        ("operator_paid_by_month", map_of(FLOAT)), ("operator_paid_total", FLOAT), ("_meta", META)),
    "operator": (
        ("nodes", INT), ("wallets", list_of(STR)), ("never_contacted_nodes", INT), ("disqualified_nodes", INT),
        ("suspended_nodes", INT), ("free_disk_bytes", INT), ("piece_count", INT), ("paid_by_month", map_of(FLOAT)),
        ("paid_total", FLOAT), ("users", list_of(STR)), ("_meta", META)),
}
