"""Expectations shared by tests: a storj user with no data, and values with their types visible."""
from __future__ import annotations

EMPTY_STORJ_USER = {
    "email_hash": None, "created_at": None,
    "projects": 0, "project_created_dates": [], "tier": "free",
    "bandwidth_limit_bytes": 0, "usage_limit_bytes": 0,
    "uploads": 0, "downloads": 0,
    "upload_bytes_by_month": {}, "download_bytes_by_month": {},
    "first_activity_at": None, "last_activity_at": None,
    "storage_bytes": 0, "storage_updated_at": None,
    "over_bandwidth_months": [], "over_storage_limit": False,
    "usage_sessions_count": 0, "usage_sessions_seconds": 0.0,
    "operator_nodes": 0, "operator_paid_by_month": {}, "operator_paid_total": 0.0,
}


def typed(value):
    """The value with its types visible, so that 1 != 1.0 and True != 1."""
    if isinstance(value, dict):
        return {typed(key): typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)
