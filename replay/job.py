"""A replay as a job, without the command line: check the source, publish it in event-time order (or follow
it), optionally wait until Redis reflects it. `fsp replay`, the demo, the bench and the tests call it."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import datasets
from common.config import Settings, require_redis, usage_error
from common.kafka_access import check_kafka
from replay.sources.base import BadRecord


def _settings() -> Settings:
    return Settings.from_env()


def read_source(dataset: str, source: str):
    """(rows in event-time order, bad records) of a CSV folder or a database URL, held in memory."""
    from replay.merge import in_event_order
    from replay.sources.base import BadRecord

    if "://" in source:
        from replay.sources.database import read_database

        items = read_database(source, dataset)
    else:
        from replay.sources.csv_folder import read_folder

        items = read_folder(source, dataset)
    good, bad = [], []
    for item in items:
        (bad if isinstance(item, BadRecord) else good).append(item)
    return in_event_order(good), bad


def check_source(dataset: str, source: str) -> None:
    """One line for a source that cannot be read: a missing folder or SQLite file, a folder or database
    without the dataset's tables (exit 2), a database that does not answer (exit 1)."""
    if "://" not in source:
        from replay.sources.csv_folder import discover

        if not os.path.isdir(source):
            usage_error(f"no such folder: {source} (a source is a CSV folder, postgresql://... or sqlite:///FILE)")
        if not discover(Path(source), dataset):
            usage_error(f"no {dataset} table files in {source}")
        return
    scheme = source.split("://", 1)[0].lower()
    if scheme == "sqlite":
        path = source.split(":///", 1)[1] if ":///" in source else ""
        if not path or not os.path.isfile(path):
            usage_error(f"no SQLite file {path or '(none given)'!r} in {source}")
    elif scheme not in ("postgresql", "postgres", "postgresql+psycopg2"):
        usage_error(f"source {source!r}: expected a CSV folder, postgresql://... or sqlite:///FILE")
    import sqlalchemy as sa

    from replay.sources.database import engine_for, table_names

    engine = engine_for(source)
    try:
        found = table_names(engine, dataset)
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise SystemExit(f"error: cannot read {source}: {detail}") from None
    finally:
        engine.dispose()
    if not found:
        usage_error(f"no {dataset} tables in {source}")


def source_stream(dataset: str, source: str, run_rows: int | None = None, spill_dir: str | None = None):
    """(rows and bad records in event-time order, read lazily; their count).

    Database tables are streamed with server-side cursors, sorted by the database, and merged
    lazily; CSV files carry no order, so a CSV folder is sorted in runs of `run_rows` rows spilled
    to `spill_dir` (FSP_SORT_RUN_ROWS, FSP_SORT_DIR) and merged lazily: see replay.external_sort."""
    if "://" in source:
        from replay.merge import merge_streams
        from replay.sources.database import count_rows, database_streams

        return merge_streams(database_streams(source, dataset)), count_rows(source, dataset)
    from replay.external_sort import sort_externally
    from replay.sources.csv_folder import read_folder

    settings = _settings()
    return sort_externally(read_folder(source, dataset), run_rows or settings.sort_run_rows,
                           spill_dir or settings.sort_dir)


def replay(dataset: str, source: str, kafka_broker: str, redis_url: str | None, *, partitions: int, prefix: str = "",
           pack: int = 20_000, resume: bool = False, wait: bool = False, timeout: float = 300.0,
           progress: bool = True, max_bad: int | None = None, state_dir: str = ".fsp", alive=None,
           require_worker: bool = False, follow: bool = False, interval: float = 1.0, stop=None, say=print):
    """`alive`: asked while waiting, ends the wait when false; `require_worker`: without `alive`, the wait
    ends once no worker says it is alive (stream.client.workers_alive).

    `follow`: publish the history, then new rows every `interval` s until `stop` (a threading.Event) is
    set (replay.follow); `say` gets the line that says the history is published. `resume` of a followed
    source publishes what is new since its cursor and ends the run."""
    from common.gc_tuning import tune_gc
    from replay.follow import follow as follow_source
    from replay.follow import is_follow_checkpoint
    from replay.publisher import Checkpoint, publish
    from stream.client import connect, wait_finished

    tune_gc()  # the rows of a run are held and sorted in memory: see common.gc_tuning
    check_source(dataset, source)
    check_kafka(kafka_broker)
    if wait:
        require_redis(redis_url)
    cursor = checkpoint_path(dataset, source, state_dir, "follow")
    if follow or (resume and is_follow_checkpoint(cursor)):
        summary = follow_source(dataset, source, kafka_broker, partitions, Checkpoint(cursor), interval=interval,
                                pack=pack, progress=progress, stop=stop, say=say, finish=not follow)
    else:
        items, total = source_stream(dataset, source)
        if max_bad is not None:
            items = _fail_past(items, max_bad)
        checkpoint = Checkpoint(checkpoint_path(dataset, source, state_dir))
        summary = publish(items, dataset, kafka_broker, partitions, pack, checkpoint, resume, progress, total=total)
    if "://" not in source:
        from replay.sources.csv_folder import unknown_files

        summary.ignored_files = unknown_files(source, dataset)
    if summary.bad_rows and redis_url:  # the dead-letter count covers the replay's rejects too
        from contract import keys

        status = keys.status_key(prefix, dataset)
        connect(redis_url).pipeline().hincrby(status, "dead_letters", summary.bad_rows).hincrby(
            status, "dead_letters:replay", summary.bad_rows).execute()
    if wait:
        r = connect(redis_url)
        if alive is None and require_worker:
            from stream.client import workers_alive

            alive = workers_alive(r, dataset, prefix)
        started = time.monotonic()
        try:
            wait_finished(r, dataset, summary.run, datasets.get(dataset).final_stage, partitions, prefix, timeout,
                          alive=alive)
        except (RuntimeError, TimeoutError) as exc:
            exc.summary = summary  # what was published, for the caller to say before the error
            raise
        summary.wait_seconds = time.monotonic() - started
    return summary


def checkpoint_path(dataset: str, source: str, state_dir: str = ".fsp", kind: str = "replay") -> Path:
    """Where a replay of this source records its progress (stable across processes); `kind` "follow": the
    cursor of `replay --follow`, apart, so that a one-shot replay of the source leaves it alone."""
    where = os.path.abspath(source) if "://" not in source else source
    tag = hashlib.blake2b(f"{dataset}|{where}".encode(), digest_size=6).hexdigest()
    return Path(state_dir) / f"{kind}-{dataset}-{tag}.json"


def _fail_past(items, max_bad: int):
    """Fail before anything is published once bad rows pass the threshold: bad records come first in the
    merged order (replay.merge), so they are held until the first good row shows they are all."""
    held = []
    for item in items:
        if held is not None and isinstance(item, BadRecord):
            held.append(item)
            if len(held) > max_bad:
                raise SystemExit(f"error: more than --max-bad {max_bad} bad rows, nothing published; the last: "
                                 f"{item.origin} {item.reason}")
            continue
        if held is not None:
            yield from held
            held = None
        yield item
    if held:
        yield from held


def print_summary(summary) -> None:
    d = summary.as_dict()
    print(f"replay {d['dataset']} run {d['run']}: read {d['rows_read']} rows, published {d['published']} "
          f"in {d['messages']} messages ({d['rows_per_s']:,} rows/s), duplicates {d['duplicates']}, "
          f"bad rows {d['bad_rows']}"
          + (f", skipped by resume {d['skipped_by_resume']}" if d['skipped_by_resume'] else ""))
    if d["ignored_files"]:
        print(f"  ignored {len(d['ignored_files'])} files that are no {d['dataset']} table: "
              + ", ".join(d["ignored_files"][:10]))
    for bad in d["bad_examples"][:10]:
        print(f"  bad row {bad['origin']} ({bad['table']}): {bad['reason']}")
    if "wait_seconds" in d:
        print(f"every event reflected in Redis {d['wait_seconds']:.2f}s after the last publish")
