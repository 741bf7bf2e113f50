"""Configuration from environment variables, with documented defaults (see README)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from replay.external_sort import RUN_ROWS

STORES = ("rocksdb", "memory")  # stream.runtime.state_backends
# Beside the replay's checkpoints (.fsp/replay-*.json): one hidden folder for what the project keeps
# locally, rather than Faust's default datadir ({app id}-data in the working directory).
DEFAULT_STATE_DIR = os.path.join(".fsp", "state")


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def usage_error(message: str) -> None:
    """A setting or argument the user got wrong: one line on stderr, exit code 2."""
    import sys

    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _positive_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        usage_error(f"{name}={text!r}: expected a whole number of at least 1")
    return value


def require_redis(url: str, timeout_s: float = 3.0) -> None:
    """One line and exit code 1 when nothing answers as Redis at `url` within a few seconds."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s).ping()
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SystemExit(f"error: no Redis answers at REDIS_URL={url} ({detail})") from None


def store_from_env() -> str:
    store = (os.environ.get("FSP_STORE") or STORES[0]).lower()
    if store not in STORES:
        usage_error(f"FSP_STORE must be one of {', '.join(STORES)}, not {store!r}")
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
    report_cache_s: int = 60  # how long `fsp serve` keeps a drawn report (serving.app.ReportCache)

    @classmethod
    def from_env(cls) -> "Settings":
        redis_url = os.environ.get("REDIS_URL") or None
        if redis_url is not None and not redis_url.startswith(REDIS_SCHEMES):
            usage_error(f"REDIS_URL={redis_url!r} is no Redis URL: expected redis://host:port/db "
                        "(or rediss://, unix://)")
        return cls(
            kafka_broker=os.environ.get("KAFKA_BROKER") or None,
            redis_url=redis_url,
            prefix=os.environ.get("FEATURE_PREFIX", ""),
            partitions=_positive_int("PARTITIONS", 4),
            sessions_cap=_positive_int("SESSIONS_CAP", 100),
            sort_run_rows=_positive_int("FSP_SORT_RUN_ROWS", RUN_ROWS),
            sort_dir=os.environ.get("FSP_SORT_DIR") or None,
            store=store_from_env(),
            state_dir=os.environ.get("FSP_STATE_DIR") or DEFAULT_STATE_DIR,
            report_cache_s=_positive_int("FSP_REPORT_CACHE_S", 60),
        )
