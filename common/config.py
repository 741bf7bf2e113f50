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


def number_in_range(name: str, default: float, low: float, high: float, parse=int, unit: str = ""):
    """A numeric setting from the environment, `default` when unset; one line naming it when it is no number
    `parse` reads or lies outside [low, high]."""
    text = os.environ.get(name, "").strip() or str(default)
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        kind = "a whole number" if parse is int else "a number"
        raise SystemExit(f"error: {name}={text!r}: expected {kind} of {unit} from {low} to {high}".replace("  ", " "))
    return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, zero: bool = False) -> float:
    """Seconds in `90`, `90s`, `15m`, `1h`, `1.5h` or `30d` (`zero`: 0 too); ValueError (with what is
    expected) otherwise."""
    body = text.strip().lower()
    unit = DURATION_UNITS.get(body[-1:], None)
    number = body[:-1] if unit is not None else body
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = None
    if seconds is None or not (0 <= seconds if zero else 0 < seconds) or seconds == float("inf"):
        raise ValueError(f"{text!r} is no duration: expected a {'' if zero else 'positive '}number of seconds, "
                         "or one with a unit s, m, h or d (90, 15m, 1h, 30d)")
    return seconds


def feature_ttl_from_env() -> dict[str, float]:
    """FEATURE_TTL=storj=30d,ucn=7d: per dataset, how long a snapshot lives after its last write."""
    import datasets

    known = datasets.names()
    text = os.environ.get("FEATURE_TTL", "").strip()
    ttl: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        dataset, equals, duration = (part.strip() for part in item.partition("="))
        if not equals or dataset not in known or dataset in ttl:
            usage_error(f"FEATURE_TTL={text!r}: expected DATASET=DURATION pairs, each dataset once, e.g. "
                        f"storj=30d,ucn=7d (datasets: {', '.join(known)})")
        try:
            ttl[dataset] = parse_duration(duration)
        except ValueError as exc:
            usage_error(f"FEATURE_TTL, {dataset}: {exc}")
    return ttl


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
    feature_ttl: dict | None = None  # dataset -> seconds a snapshot lives after its last write; absent: for good

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
            feature_ttl=feature_ttl_from_env(),
        )
