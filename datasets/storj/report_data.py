"""What storj's report plots (datasets/storj/report.py), from user snapshots: pure (numpy, no Redis, no
matplotlib). Bytes stay integers here; the figures turn them into GB."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

TIERS = ("free", "paid")


@dataclass
class StorjData:
    """Sums and per-user figures over the storj users fed to it."""

    users: Counter = field(default_factory=Counter)  # tier -> users
    upload: dict = field(default_factory=lambda: {tier: Counter() for tier in TIERS})  # tier -> month -> bytes
    download: dict = field(default_factory=lambda: {tier: Counter() for tier in TIERS})
    free_over_bandwidth: Counter = field(default_factory=Counter)  # month -> free users over a project's limit
    free_over_storage: int = 0
    storage: dict = field(default_factory=lambda: {tier: [] for tier in TIERS})  # tier -> bytes per user
    operators: list = field(default_factory=list)  # (earned, bytes used, tier) of users who run nodes

    def add_user(self, features: dict) -> None:
        tier = features.get("tier") if features.get("tier") in TIERS else "free"
        self.users[tier] += 1
        uploads = features.get("upload_bytes_by_month") or {}
        downloads = features.get("download_bytes_by_month") or {}
        self.upload[tier].update(uploads)
        self.download[tier].update(downloads)
        storage = features.get("storage_bytes") or 0
        self.storage[tier].append(storage)
        if tier == "free":
            self.free_over_bandwidth.update(features.get("over_bandwidth_months") or [])
            self.free_over_storage += bool(features.get("over_storage_limit"))
        if features.get("operator_nodes"):
            used = sum(uploads.values()) + sum(downloads.values()) + storage
            self.operators.append((features.get("operator_paid_total") or 0.0, used, tier))

    def months(self) -> list[str]:
        """Every month with bandwidth or a free user over a limit, in order."""
        seen = set(self.free_over_bandwidth)
        for by_tier in (self.upload, self.download):
            for counter in by_tier.values():
                seen.update(counter)
        return sorted(seen)

    def monthly(self, direction: str) -> dict[str, np.ndarray]:
        """tier -> bytes of each of `months()` ("upload" or "download")."""
        months = self.months()
        by_tier = self.upload if direction == "upload" else self.download
        return {tier: np.array([by_tier[tier].get(m, 0) for m in months], dtype=np.int64) for tier in TIERS}
