"""Configuration from environment variables, with documented defaults (see README)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from replay.external_sort import RUN_ROWS

STORES = ("rocksdb", "memory")  # stream.runtime.state_backends
# Beside the replay's checkpoints (.fsp/replay-*.json): one hidden folder for what the project keeps
# locally, rather than Faust's default datadir ({app id}-data in the working directory).
DEFAULT_STATE_DIR = os.path.join(".fsp", "state")


def store_from_env() -> str:
    store = (os.environ.get("FSP_STORE") or STORES[0]).lower()
    if store not in STORES:
        raise SystemExit(f"error: FSP_STORE must be one of {', '.join(STORES)}, not {store!r}")
    return store


@dataclass(frozen=True)
class Settings:
    kafka_broker: str | None  # host:port[,host:port]; None -> embedded broker
    redis_url: str | None  # None -> the local Redis if reachable, else embedded
    prefix: str  # Redis key prefix (several deployments can share a Redis)
    partitions: int  # partitions of every topic the project creates
    sessions_cap: int
    store: str  # where workers keep keyed state: rocksdb (on disk, under state_dir) or memory
    state_dir: str
    sort_run_rows: int = RUN_ROWS  # rows a replay of a CSV folder sorts in memory at once (a run)
    sort_dir: str | None = None  # where it spills sorted runs; None -> the system's temporary folder

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            kafka_broker=os.environ.get("KAFKA_BROKER") or None,
            redis_url=os.environ.get("REDIS_URL") or None,
            prefix=os.environ.get("FEATURE_PREFIX", ""),
            partitions=int(os.environ.get("PARTITIONS", "4")),
            sessions_cap=int(os.environ.get("SESSIONS_CAP", "100")),
            sort_run_rows=int(os.environ.get("FSP_SORT_RUN_ROWS") or RUN_ROWS),
            sort_dir=os.environ.get("FSP_SORT_DIR") or None,
            store=store_from_env(),
            state_dir=os.environ.get("FSP_STATE_DIR") or DEFAULT_STATE_DIR,
        )
