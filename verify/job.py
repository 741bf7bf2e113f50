"""Verification as a job, without the command line: the independent batch computation of a source against
what Redis holds."""
from __future__ import annotations

import datasets


def verify(dataset: str, source: str, redis_url: str, prefix: str = ""):
    """The dataset's independent batch computation (Dataset.compute) of `source`, compared with Redis:
    (mismatches, entities counted per kind)."""
    from stream.client import all_features, connect, get_sessions
    from verify.compare import compare

    described = datasets.get(dataset)
    expected = described.compute(source)
    entities = described.snapshot_entities
    r = connect(redis_url)
    actual = {entity: all_features(r, dataset, entity, prefix) for entity in entities}
    counts = {e: len(expected[e]) for e in entities}
    if "sessions" in expected:  # closed session records, newest first, compared as one field per user
        actual["session list"] = {u: {"sessions": get_sessions(r, dataset, u, prefix)} for u in expected["sessions"]}
        expected["session list"] = {u: {"sessions": s} for u, s in expected["sessions"].items()}
        entities = (*entities, "session list")
    expected = {entity: expected[entity] for entity in entities}
    return compare(expected, actual), counts
