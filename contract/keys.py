"""Redis key names (SPEC §3); every key takes the deployment's prefix. Which entity kinds of a dataset
have snapshots, and which a session list, the dataset says (Dataset.snapshot_entities, .session_lists)."""
from __future__ import annotations


def feature_key(prefix: str, dataset: str, entity: str, entity_id) -> str:
    return f"{prefix}feat:{dataset}:{entity}:{entity_id}"


def sessions_key(prefix: str, dataset: str, entity_id) -> str:
    return f"{prefix}sessions:{dataset}:user:{entity_id}"


def entities_key(prefix: str, dataset: str, entity: str) -> str:
    return f"{prefix}entities:{dataset}:{entity}"


def freshness_key(prefix: str, dataset: str, entity: str) -> str:
    """Sorted set of the ids that have a snapshot, scored by `updated_at` (epoch seconds): when a feature
    of the entity last changed. The stalest entities come first (ZRANGEBYSCORE)."""
    return f"{prefix}freshness:{dataset}:{entity}"


def status_key(prefix: str, dataset: str) -> str:
    """Hash of run progress: which stage partitions saw a run's end mark, and when."""
    return f"{prefix}status:{dataset}"


def writers_key(prefix: str) -> str:
    """Hash of the snapshot writers (worker incarnations) that have written to this Redis: a writer
    missing from it finds that Redis lost its data (restarted empty, or flushed)."""
    return f"{prefix}writers"


def workers_key(prefix: str) -> str:
    """Hash of the live workers: worker id -> {"at": epoch seconds of its last beat, "datasets": [...]}."""
    return f"{prefix}workers"
