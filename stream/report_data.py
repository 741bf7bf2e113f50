"""What the report's figures plot, from feature snapshots: pure (numpy, no Redis, no matplotlib).

Each dataset has an accumulator fed one snapshot (and, for ucn, one user's session list) at a time, so
the report reads Redis page by page (datasets/*/report_data.py). It keeps sums, and per entity only the
few numbers a distribution needs. Bytes stay integers there; the figures turn them into GB. What they
share is here.
"""
from __future__ import annotations

import numpy as np

GB = 1e9


def ecdf(values) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, fraction of values ≤ each): the empirical distribution function."""
    x = np.sort(np.asarray(values, dtype=float))
    return x, np.arange(1, len(x) + 1) / max(len(x), 1)
