"""Follow mode: replay a source's history, then keep publishing its new rows as they arrive.

The history and every poll after it are one run: the same run id, the same
progress marks moving with event time, and no end mark. An end mark closes
every window of the run (replay.publisher, stream.runtime.stages), so a
session that began in the history and goes on in the live rows would be cut
at the handover; instead the live rows' progress marks move the stream's
event time on, and windows close by event time (gap + allowed lateness), as
they do inside a replay. Progress marks of a run hold the stream's event
time until every source partition has spoken, whatever the wall clock says
(stream.logic.source_clock), so closing stays exact across the handover.

What has been published is a cursor per source (replay.follow_cursor for
database tables, replay.sources.csv_tail for CSV files), saved in the
replay's checkpoint after every poll whose rows are in the broker. A
restarted follow resumes from it under the same run id: a row is published
once, and the stream counts a row published twice (a crash between the
broker's acknowledgement and the save) once, by its event id. `finish`
publishes what is new since the cursor and ends the run with its end mark,
which closes every window.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from replay import follow_cursor
from replay.merge import in_event_order, merge_streams
from replay.publisher import Checkpoint, Publisher, ReplaySummary, SeenEvents
from replay.sources.base import SourceRow

POLL_INTERVAL_S = 1.0
REMARK_EVERY_S = 10.0  # progress marks again when nothing moved: a worker started since hears them


def identity(item) -> str:
    """What tells rows apart for a cursor: the event id, or for a bad row a hash of its text."""
    if isinstance(item, SourceRow):
        return item.row.eid
    return "bad:" + hashlib.blake2b(f"{item.origin}|{item.original}".encode("utf-8", "replace"),
                                    digest_size=8).hexdigest()


class DatabaseSource:
    """The tables of a dataset in a database, each followed by its own cursor (replay.follow_cursor)."""

    kind = "database"

    def __init__(self, url: str, dataset: str, state: dict | None):
        import sqlalchemy as sa

        from replay.sources.database import engine_for

        # a poll that fails for these is tried again (see follow): the database away, its tables gone
        self.transient = (sa.exc.SQLAlchemyError, FileNotFoundError)

        self.url, self.dataset = url, dataset
        self.engine = engine_for(url)
        self.cursors = {name: follow_cursor.from_state(c) for name, c in (state or {}).items()}
        self.columns: dict[str, list] = {}  # table -> its column names, looked up once
        self._scans: dict = {}

    def _tables(self):
        import sqlalchemy as sa

        from replay.sources.database import table_names

        found = table_names(self.engine, self.dataset)
        if not found:
            raise FileNotFoundError(f"no {self.dataset} tables in {self.url}")
        for name, spec in found:
            if name not in self.columns:
                columns = {c["name"]: c["type"] for c in sa.inspect(self.engine).get_columns(name)}
                self.columns[name] = list(columns)
                if name not in self.cursors:
                    integer_id = isinstance(columns.get("id"), sa.Integer)
                    time_column = spec.time if spec.time in columns else None
                    self.cursors[name] = follow_cursor.choose(integer_id, time_column)
        return found

    def read(self):
        """The rows past every table's cursor, merged in event-time order (lazily)."""
        from replay.sources.database import read_table

        self._scans = {}
        streams = []
        for name, spec in self._tables():
            cursor = self.cursors[name]
            scan = self._scans[name] = cursor.scan()
            where, params = cursor.where()
            column = getattr(cursor, "column", None)

            def keep(record, item, scan=scan, column=column) -> bool:
                return scan.keep(record.get(column) if column else None, identity(item))

            streams.append(_completing(read_table(self.engine, name, spec, where, params, keep, self.columns[name]),
                                       scan))
        return merge_streams(streams)

    def history(self):
        return self.read(), None

    def advance(self, now_s: float) -> None:
        """The rows read last are published: the cursors move past them."""
        for name, scan in self._scans.items():
            self.cursors[name] = self.cursors[name].after(scan, now_s)
        self._scans = {}

    def state(self) -> dict:
        return {name: cursor.to_state() for name, cursor in self.cursors.items()}

    def close(self) -> None:
        self.engine.dispose()


def _completing(stream, scan):
    """The rows of `stream`; `scan` learns when it is read to its end."""
    yield from stream
    scan.complete = True


class FolderSource:
    """The table files of a CSV folder, each followed from the end of its last complete record."""

    kind = "folder"
    transient = (OSError,)

    def __init__(self, folder: str, dataset: str, state: dict | None, warn=None):
        from replay.sources.csv_tail import FolderCursor

        self.folder, self.dataset, self.warn = folder, dataset, warn
        self.cursor = FolderCursor.from_state(state)
        self._after = None

    def _new_rows(self):
        from replay.sources.csv_tail import FolderCursor, read_folder_new

        self._after = FolderCursor(dict(self.cursor.files))
        return read_folder_new(self.folder, self.dataset, self.cursor, self._after, self.warn)

    def read(self):
        return in_event_order(list(self._new_rows()))

    def history(self):
        """Every complete record, sorted in event-time order as a plain replay sorts a folder."""
        from common.config import Settings
        from replay.external_sort import sort_externally

        settings = Settings.from_env()
        return sort_externally(self._new_rows(), settings.sort_run_rows, settings.sort_dir)

    def advance(self, now_s: float) -> None:
        if self._after is not None:
            self.cursor, self._after = self._after, None

    def state(self) -> dict:
        return self.cursor.to_state()

    def close(self) -> None:
        pass


def open_source(dataset: str, source: str, state: dict | None, warn=None):
    if "://" in source:
        return DatabaseSource(source, dataset, state)
    return FolderSource(source, dataset, state, warn)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@contextmanager
def only_follower(cursor: Path):
    """Hold the lock beside a cursor file for as long as this process follows (or ends) its run: two
    followers of one source would publish its rows twice and overwrite each other's cursor."""
    cursor.parent.mkdir(parents=True, exist_ok=True)
    with open(cursor.with_suffix(".lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise SystemExit(f"error: another follow of this source is running (pid {handle.read().strip() or '?'}, "
                             f"lock {handle.name})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def follow(dataset: str, source: str, bootstrap: str, partitions: int, checkpoint: Checkpoint, *,
           interval: float = POLL_INTERVAL_S, pack: int = 20_000, progress: bool = True,
           stop: threading.Event | None = None, say=print, finish: bool = False) -> ReplaySummary:
    """Publish the history of `source` (unless a saved cursor says it is published), then poll it every
    `interval` seconds until `stop` is set. With `finish`: publish what is new since the saved cursor,
    end the run with its end mark and return. The summary counts this process's rows; the checkpoint
    keeps the run's total (`follow.published`)."""
    with only_follower(checkpoint.path):
        return _follow(dataset, source, bootstrap, partitions, checkpoint, interval, pack, progress,
                       stop or threading.Event(), say, finish)


def _follow(dataset, source, bootstrap, partitions, checkpoint, interval, pack, progress, stop, say, finish):
    from tqdm import tqdm

    saved = checkpoint.load()
    followed = saved.get("follow") if not saved.get("finished") else None
    run = saved["run"] if followed else uuid.uuid4().hex[:12]
    reader = open_source(dataset, source, followed["cursors"] if followed else None, _warn)
    publisher = Publisher(dataset, bootstrap, partitions, run)
    summary = publisher.summary
    published_before = followed["published"] if followed else 0
    started = time.perf_counter()

    def save(finished: bool = False) -> None:
        total = published_before + summary.published
        checkpoint.save({"run": run, "done_rows": total, "finished": finished, "follow": {
            "source": reader.kind, "cursors": reader.state(), "published": total,
            "newest_ts": publisher.newest_ts, "marked_ts": publisher.marked_ts}})

    failing = []  # the error of the poll that failed last, while polls fail

    def poll() -> None:
        """Publish what is new since the cursors, then move them past it. A source that cannot be read
        (a database away, a file gone while read) is tried again at the next poll; its cursor has not
        moved, so rows published before the failure go again (the stream counts each event id once)."""
        try:
            publisher.publish_items(reader.read(), pack, SeenEvents())
        except reader.transient as exc:
            publisher.flush()
            if not failing:
                _warn(f"cannot read {source}: {_one_line(exc)}; trying again every {interval:g} s")
            failing[:] = [exc]
            return
        if failing:
            failing.clear()
            say(f"follow {dataset} run {run}: {source} can be read again")
        publisher.mark_progress()
        publisher.flush()  # the rows are in the broker: the cursor may move past them
        reader.advance(time.time())
        save()

    try:
        if followed:
            publisher.newest_ts, publisher.marked_ts = followed.get("newest_ts"), followed.get("marked_ts")
            headline = f"resumed from its cursor ({published_before:,} rows published before)"
        else:
            items, total = reader.history()
            bar = tqdm(total=total, unit="row", disable=not progress, desc=f"history {dataset}", smoothing=0.1)
            try:
                publisher.publish_items(items, pack, SeenEvents(), bar=bar, should_stop=stop.is_set)
            finally:
                bar.close()
            if stop.is_set():
                publisher.flush()
                say(f"follow {dataset} run {run}: stopped before the history was published; a restart "
                    f"publishes it again")
                return _timed(summary, started)
            publisher.mark_progress()
            publisher.flush()
            reader.advance(time.time())
            save()
            headline = f"history published ({summary.published:,} rows)"
        if finish:
            poll()
            if failing:
                raise SystemExit(f"error: cannot read {source}: {_one_line(failing[0])}; the run is not ended")
            publisher.end_run()
            publisher.flush()
            save(finished=True)
            say(f"follow {dataset} run {run}: {headline}; ended with {summary.published:,} rows published now, "
                f"{published_before + summary.published:,} in all")
            return _timed(summary, started)
        say(f"follow {dataset} run {run}: {headline}; following new rows every {interval:g} s "
            f"(Ctrl-C or SIGTERM stops)")
        marked_at = time.monotonic()
        while not stop.wait(interval):
            marked = publisher.marked_ts
            poll()
            if publisher.marked_ts != marked:
                marked_at = time.monotonic()
            elif time.monotonic() - marked_at >= REMARK_EVERY_S:
                publisher.remark_progress()
                publisher.flush()
                marked_at = time.monotonic()
        say(f"follow {dataset} run {run}: stopped; cursor saved in {checkpoint.path} "
            f"({published_before + summary.published:,} rows published in all)")
        return _timed(summary, started)
    finally:
        publisher.close()
        reader.close()


def _one_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _timed(summary: ReplaySummary, started: float) -> ReplaySummary:
    summary.seconds = time.perf_counter() - started
    return summary


def is_follow_checkpoint(path: Path) -> bool:
    """Does the checkpoint hold a follow run that has not ended (what `replay --resume` then finishes)?"""
    state = Checkpoint(path).load()
    return bool(state.get("follow")) and not state.get("finished")
