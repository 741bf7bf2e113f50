"""Verification as a job, without the command line: the independent batch computation of a source against
what Redis holds."""
from __future__ import annotations

from contract.keys import SNAPSHOT_ENTITIES


def verify(dataset: str, source: str, redis_url: str, prefix: str = ""):
    from stream.client import all_features, connect, get_sessions
    from verify.compare import compare

    if dataset == "storj":
        from datasets.storj.batch import compute_storj

        expected = compute_storj(source)
    else:
        from datasets.ucn.batch import compute_ucn

        expected = compute_ucn(source)
    entities = SNAPSHOT_ENTITIES[dataset]
    r = connect(redis_url)
    actual = {entity: all_features(r, dataset, entity, prefix) for entity in entities}
    counts = {e: len(expected[e]) for e in entities}
    if "sessions" in expected:  # closed session records, newest first, compared as one field per user
        actual["session list"] = {u: {"sessions": get_sessions(r, dataset, u, prefix)} for u in expected["sessions"]}
        expected["session list"] = {u: {"sessions": s} for u, s in expected["sessions"].items()}
        entities = (*entities, "session list")
    expected = {entity: expected[entity] for entity in entities}
    return compare(expected, actual), counts
