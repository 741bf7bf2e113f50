"""Follow a CSV folder: the rows of each file past what was read, and of files that appear.

A file is read from the byte offset where its last complete record ended. A
record is complete once its last line ends with a newline: a line still being
written, and a quoted cell whose closing quote is not written yet, wait for
the next read (up to the limits of replay.sources.csv_folder: a quote that
has not closed within MAX_RECORD_LINES lines or MAX_RECORD_BYTES bytes is a
bad record there, and here too). Lines end with LF or CRLF; records are cut
into cells exactly as a whole-file read cuts them, so a file read in pieces
gives the rows (and line numbers) of the same file read at once.

Per file the cursor keeps the offset, the line number there, the header and
the file's inode: a file that shrank or was replaced is read again from its
start (its rows were published already; the stream counts each event id
once), with a warning.
"""
from __future__ import annotations

import codecs
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from contract import tables

from .base import BadRecord
from .csv_folder import _Records, discover, read_header, records_to_rows


@dataclass
class FileCursor:
    """How far one file is read: `offset` bytes, `line` lines; its header once read."""

    offset: int = 0
    line: int = 0
    header: list | None = None
    inode: int | None = None
    skipped: str | None = None  # why the file is not read (an unreadable header)

    @classmethod
    def from_state(cls, state: dict) -> FileCursor:
        return cls(**state)

    def to_state(self) -> dict:
        return asdict(self)


def _lines(handle):
    """Text lines of a binary file, split on LF only (the last one may lack it)."""
    for line in handle:
        yield line.decode("utf-8", "surrogateescape")


def read_new(path: Path, spec: tables.TableSpec, folder: Path, cursor: FileCursor, warn=None):
    """Yield SourceRow / BadRecord of the complete records past `cursor`; return the cursor after them
    (`after = yield from read_new(...)`)."""
    relative = path.relative_to(folder).as_posix()
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return cursor
    if cursor.skipped is not None:
        return cursor
    if cursor.inode is not None and (stat.st_ino != cursor.inode or stat.st_size < cursor.offset):
        if warn is not None:
            warn(f"{relative} was replaced or truncated: read again from its start")
        cursor = FileCursor()
    if stat.st_size == cursor.offset and cursor.inode is not None:
        return cursor
    with open(path, "rb") as handle:
        if cursor.offset == 0:
            if handle.read(3) != codecs.BOM_UTF8:  # a byte-order mark is no part of the header
                handle.seek(0)
        else:
            handle.seek(cursor.offset)
        start = handle.tell()
        records = _Records(_lines(handle), first_line=cursor.line, tail=True)
        stream = iter(records)
        header = cursor.header
        if header is None:
            first = next(stream, None)
            if first is None:
                return FileCursor(inode=stat.st_ino)  # not even a complete header yet
            header = read_header(first, spec, relative)
            if isinstance(header, BadRecord):
                yield header
                return FileCursor(start + records.done_bytes, records.done_lines, None, stat.st_ino,
                                  skipped=header.reason)
        records.width = len(header)
        yield from records_to_rows(stream, spec, relative, header)
        return FileCursor(start + records.done_bytes, records.done_lines, header, stat.st_ino)


@dataclass
class FolderCursor:
    """Every file of a followed folder (relative path -> FileCursor); files found later start at 0."""

    files: dict = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: dict | None) -> FolderCursor:
        return cls({name: FileCursor.from_state(c) for name, c in (state or {}).items()})

    def to_state(self) -> dict:
        return {name: cursor.to_state() for name, cursor in self.files.items()}


def read_folder_new(folder, dataset: str, cursor: FolderCursor, after: FolderCursor, warn=None):
    """Yield the rows and bad records past `cursor`, file after file in file order; `after` (a copy of
    `cursor` to begin with) gets each file's cursor once its rows are read."""
    folder = Path(folder)
    for path, spec in discover(folder, dataset):
        name = path.relative_to(folder).as_posix()
        after.files[name] = yield from read_new(path, spec, folder, cursor.files.get(name, FileCursor()), warn)
