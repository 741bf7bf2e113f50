"""Event-time order of more rows than fit in memory: an external merge sort.

A CSV folder carries no order, so its rows are sorted before they are published;
sorting them as one list held the whole folder in memory. Here the rows are cut,
in read order, into runs of at most `run_rows` rows; each run is sorted and
spilled to a private temporary directory, and the runs are merged lazily.

Memory bound: rows held = `run_rows` (the run being cut; while merging, the last
run, which is never spilled) + one chunk of each spilled run being merged, a
chunk being `run_rows // fan_in` rows (at least 1, at most CHUNK_ROWS): under
2 x `run_rows` in all. At most `fan_in` runs are merged at once (runs past it
are first merged in groups into longer runs), so open files stay few. A source
that fits in one run is sorted in memory and never touches the disk. The runs
are pickled a chunk at a time (a pickle per row cost as much as the sort); the
files are this process's own, in a directory only its user can open.

The order is exactly `replay.merge.in_event_order`'s: the same key, and ties in
read order, kept across runs by a read sequence number in every spilled record.
Bad records have the lowest key, so they come first, in read order.

A row read back from disk carries its values already encoded, as an
`orjson.Fragment` in `Row.values`: sorted rows are only published, the
publisher writes a Fragment as the JSON it holds, and reading a bytes object
back costs half of what rebuilding the values' dict did, inside the replay's
publishing. Runs merged into longer runs are not decoded at all.
"""
from __future__ import annotations

import heapq
import os
import pickle
import tempfile
import weakref
from operator import itemgetter
from typing import Iterable, Iterator

import orjson

import datasets
from contract import wire
from contract.rows import Row
from replay.merge import event_key
from replay.sources.base import SourceRow

RUN_ROWS = 200_000  # default rows a run holds (env FSP_SORT_RUN_ROWS)
FAN_IN = 128  # runs merged at once: open files and rows held while merging
CHUNK_ROWS = 4096  # most rows of one run pickled, and read back, at once


def _flat(item):
    """A SourceRow as a tuple of plain values (its table by name, its values encoded as the publisher encodes
    them): small and fast to pickle. Bad records are rare and pickled as they are."""
    if not isinstance(item, SourceRow):
        return item
    row = item.row
    values = orjson.dumps(row.values, default=wire.struct_json)
    return (item.spec.dataset, item.spec.name, row.key, row.ts, row.eid, values, item.origin)


def _restored(flat):
    """The item `_flat` made, with its table's spec, its values as an orjson.Fragment."""
    if type(flat) is not tuple:
        return flat
    dataset, table, key, ts, eid, values, origin = flat
    return SourceRow(datasets.get(dataset).tables[table], Row(key, ts, eid, orjson.Fragment(values)), origin)


def _write_run(records: Iterable, path: str, chunk_rows: int, flat: bool = False) -> str:
    """Spill (key, sequence, item) records a pickled list of `chunk_rows` at a time, so that reading holds
    one chunk at a time. `flat`: the items are `_flat` already (records of runs being merged)."""
    with open(path, "wb") as handle:
        chunk: list = []
        for record in records:
            chunk.append(record if flat else (record[0], record[1], _flat(record[2])))
            if len(chunk) == chunk_rows:
                pickle.dump(chunk, handle, protocol=pickle.HIGHEST_PROTOCOL)
                chunk = []
        if chunk:
            pickle.dump(chunk, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _read_run(handle) -> Iterator:
    """A run's (key, sequence, flat item) records, a chunk at a time."""
    while True:
        try:
            chunk = pickle.load(handle)
        except EOFError:
            return
        yield from chunk


class _Spill:
    """The temporary directory of one sort, its run files and those open; removed once, however the sort ends."""

    def __init__(self, parent: str | None, chunk_rows: int):
        self.chunk_rows = chunk_rows
        self.directory = tempfile.TemporaryDirectory(prefix="fsp-sort-", dir=parent)
        self.paths: list[str] = []
        self._handles: list = []
        self._written = 0

    def add_run(self, records: Iterable) -> None:
        self.paths.append(self._write(records))

    def _write(self, records: Iterable, flat: bool = False) -> str:
        self._written += 1
        return _write_run(records, os.path.join(self.directory.name, f"run-{self._written:06d}.pickle"),
                          self.chunk_rows, flat)

    def open_runs(self, paths: list[str]) -> list[Iterator]:
        handles = [open(path, "rb") for path in paths]
        self._handles.extend(handles)
        return [_read_run(handle) for handle in handles]

    def merge_down(self, fan_in: int, keep: int) -> None:
        """Merge groups of `fan_in` runs into longer runs until at most `keep` remain (each open run is a
        file and a row in memory)."""
        while len(self.paths) > keep:
            merged = []
            for start in range(0, len(self.paths), fan_in):
                group = self.paths[start:start + fan_in]
                merged.append(group[0] if len(group) == 1 else self._merge_group(group))
            self.paths = merged

    def _merge_group(self, group: list[str]) -> str:
        path = self._write(heapq.merge(*self.open_runs(group)), flat=True)
        self._close_runs()
        for done in group:
            os.remove(done)
        return path

    def _close_runs(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles.clear()

    def remove(self) -> None:
        self._close_runs()
        self.directory.cleanup()


def _cut_runs(items: Iterable, run_rows: int, spill_dir: str | None, chunk_rows: int
              ) -> tuple[list, _Spill | None, int]:
    """Read every item once: (the last run, sorted, in memory; the spill of the full runs before it, if any;
    the item count)."""
    run: list = []
    spill = None
    count = 0
    try:
        for count, item in enumerate(items, 1):
            if len(run) == run_rows:  # full, and more to come: spill it
                run.sort()
                spill = spill or _Spill(spill_dir, chunk_rows)
                spill.add_run(run)
                run = []
            run.append((event_key(item), count, item))
    except BaseException:
        if spill is not None:
            spill.remove()
        raise
    run.sort()
    return run, spill, count


class MergedRuns:
    """The sorted items, read lazily from the spilled runs and the last run; the files go at the end, on
    close() or when the iterator is dropped."""

    def __init__(self, spill: _Spill, last_run: list, fan_in: int):
        self._remove = weakref.finalize(self, spill.remove)
        spill.merge_down(fan_in, keep=fan_in - 1)  # and the last run, in memory
        # the last run's records hold items, the spilled ones flat items: `_restored` passes items through
        self._records = map(_restored, map(itemgetter(2), heapq.merge(*spill.open_runs(spill.paths),
                                                                       iter(last_run))))

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._records)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._records = iter(())
        self._remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sort_externally(items: Iterable, run_rows: int = RUN_ROWS, spill_dir: str | None = None,
                    fan_in: int = FAN_IN) -> tuple[Iterator, int]:
    """(`items` in event-time order, read lazily; their count). Every item is read before this returns."""
    if run_rows < 1 or fan_in < 2:
        raise ValueError(f"run_rows must be >= 1 and fan_in >= 2 (got {run_rows}, {fan_in})")
    chunk_rows = max(1, min(CHUNK_ROWS, run_rows // fan_in))
    last_run, spill, count = _cut_runs(items, run_rows, spill_dir, chunk_rows)
    if spill is None:
        return map(itemgetter(2), last_run), count
    try:
        return MergedRuns(spill, last_run, fan_in), count
    except BaseException:
        spill.remove()
        raise
