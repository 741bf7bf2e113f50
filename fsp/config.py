"""Configuration from environment variables, with documented defaults (see README)."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    kafka_broker: str | None  # host:port[,host:port]; None -> embedded broker
    redis_url: str | None  # None -> the local Redis if reachable, else embedded
    prefix: str  # Redis key prefix (several deployments can share a Redis)
    partitions: int  # partitions of every topic the project creates
    sessions_cap: int

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            kafka_broker=os.environ.get("KAFKA_BROKER") or None,
            redis_url=os.environ.get("REDIS_URL") or None,
            prefix=os.environ.get("FEATURE_PREFIX", ""),
            partitions=int(os.environ.get("PARTITIONS", "4")),
            sessions_cap=int(os.environ.get("SESSIONS_CAP", "100")),
        )
