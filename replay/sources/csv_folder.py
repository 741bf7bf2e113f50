"""CSV folders: which file holds which table is the dataset's (Dataset.table_of_file), e.g. the storj
per-region dumps or one file per table (ucn).

Files are read in sorted order of their path relative to the folder; a first
column with an empty header (a pandas index) is dropped; a line with the
wrong number of cells or bytes that are not UTF-8 is a bad record with its
file and line, never a crash.

Records are physical lines, joined only while a quoted cell is open (RFC 4180).
A quote that does not close within MAX_RECORD_LINES lines or MAX_RECORD_BYTES
bytes, or closes into a record that does not fit the header, makes a bad record
of its own line alone: reading resumes at the next line, so one stray quote
costs one row, not the rows up to the next quote.
"""
from __future__ import annotations

import csv
import re
from collections import deque
from pathlib import Path

import datasets
from contract import tables
from contract.rows import BadRow, normalise

from .base import BadRecord, SourceRow

csv.field_size_limit(1 << 24)

MAX_RECORD_LINES = 50  # physical lines a record with an open quote may span
MAX_RECORD_BYTES = 1 << 20  # bytes it may span; a longer open quote is a bad record
MAX_ORIGINAL_CHARS = 1 << 20  # text of a bad record kept for its dead letter (messages have a size limit)

# RFC 4180: a quoted cell (quotes doubled inside, newlines allowed) or a plain one (no quote, comma, newline).
_CELL = r'(?:"[^"]*(?:""[^"]*)*"|[^",\r\n]*)'
_WELL_QUOTED_RECORD = re.compile(rf"{_CELL}(?:,{_CELL})*(?:\r\n|\n|\r)?")
_OPENS_QUOTED_CELL = re.compile(rf'(?:{_CELL},)*"[^"]*(?:""[^"]*)*')


def discover(folder: Path, dataset: str) -> list[tuple[Path, tables.TableSpec]]:
    """(file, table) pairs in file order (files in subfolders too); the dataset names the table of each
    file (Dataset.table_of_file)."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.rglob("*.csv"), key=lambda p: p.relative_to(folder).as_posix()):
        spec = _table_for(path.stem, dataset)
        if spec is not None:
            found.append((path, spec))
    return found


def unknown_files(folder, dataset: str) -> list[str]:
    """CSV files of the folder that are no table of the dataset (reported, not read)."""
    folder = Path(folder)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.csv")
                  if _table_for(p.stem, dataset) is None)


def _table_for(stem: str, dataset: str):
    return datasets.get(dataset).file_table(stem)


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _printable(text: str) -> str:
    """Text of a bad record as valid UTF-8 (undecodable bytes become U+FFFD), capped in size."""
    text = text.rstrip("\r\n")
    if len(text) > MAX_ORIGINAL_CHARS:
        text = f"{text[:MAX_ORIGINAL_CHARS]}... [{len(text) - MAX_ORIGINAL_CHARS} more chars]"
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _Records:
    """The records of one CSV file, read as RFC 4180 quotes them.

    Iterating yields (first line number, text, cells, reason): cells is None and
    reason says why when the record cannot be split into cells. A line without
    quotes (nearly all of them) is split on commas, which is what the csv module
    does with it; only records with quotes go through the csv module. `width`,
    once set, is the number of cells a record spanning several lines must have:
    otherwise its opening quote is taken for an unterminated one.
    """

    def __init__(self, handle, first_line: int = 0, tail: bool = False):
        self._lines = iter(handle)
        self._again = deque()  # lines read ahead for a quote that did not close: read them again
        self._number = first_line
        self.width: int | None = None
        # Tail mode (follow a growing file, replay.sources.csv_tail): the lines end with "\n" but the last,
        # which may be cut short; a record is complete once its last line ends. Iteration stops before
        # the first incomplete record (it waits for more), and `done_bytes` / `done_lines` say where.
        self.tail = tail
        self.done_bytes = 0
        self.done_lines = first_line

    def _next_line(self):
        if self._again:
            return self._again.popleft()
        return next(self._lines, None)

    def __iter__(self):
        lines, again, tail = self._lines, self._again, self.tail
        while True:
            line = again.popleft() if again else next(lines, None)
            if line is None or (tail and not line.endswith("\n")):
                return
            self._number += 1
            if '"' not in line:
                text = line.rstrip("\r\n")
                if tail:
                    self._done([line])
                yield self._number, text, text.split(",") if text else [], None
            else:
                record = self._quoted(line)
                if record is None:
                    return
                yield record

    def _done(self, lines) -> None:
        """Tail mode: the lines of a record about to be yielded are read for good."""
        self.done_bytes += sum(len(line.encode("utf-8", "surrogateescape")) for line in lines)
        self.done_lines = self._number

    def _quoted(self, line: str):
        """A record that starts with `line`, which has quotes: joined, validated, parsed. None in tail mode
        when the record may go on in lines not written yet."""
        number = self._number
        if line.count('"') % 2 == 0:
            if not _WELL_QUOTED_RECORD.fullmatch(line):
                return self._whole(number, [line], (number, line, None, "stray quote"))
            return self._whole(number, [line], self._parse(number, line))
        if not _OPENS_QUOTED_CELL.fullmatch(line):
            return self._whole(number, [line], (number, line, None, "stray quote"))
        parts = [line]
        quotes, size = line.count('"'), len(line.encode("utf-8", "surrogateescape"))
        while quotes % 2:
            within = len(parts) < MAX_RECORD_LINES and size <= MAX_RECORD_BYTES
            following = self._next_line() if within else None
            if following is not None and self.tail and not following.endswith("\n"):
                following = None  # a line still being written
            if following is None:
                if within and self.tail:
                    return None  # the quote may close in a line not written yet: wait for it
                return self._unterminated(number, parts)
            parts.append(following)
            quotes += following.count('"')
            size += len(following.encode("utf-8", "surrogateescape"))
        record = "".join(parts)
        if size > MAX_RECORD_BYTES or not _WELL_QUOTED_RECORD.fullmatch(record):
            return self._unterminated(number, parts)
        parsed = self._parse(number, record)
        if parsed[2] is None or (self.width is not None and len(parsed[2]) != self.width):
            return self._unterminated(number, parts)
        self._number += len(parts) - 1
        return self._whole(number, parts, parsed)

    def _whole(self, number: int, parts: list, record: tuple) -> tuple:
        if self.tail:
            self._done(parts)
        return record

    def _unterminated(self, number: int, parts: list):
        """The first line alone is the bad record; the lines read after it are read again."""
        self._again.extendleft(reversed(parts[1:]))
        return self._whole(number, parts[:1], (number, parts[0], None, "unterminated quote"))

    @staticmethod
    def _parse(number: int, record: str):
        try:
            return number, record, next(csv.reader((record,))), None
        except csv.Error as exc:
            return number, record, None, f"bad CSV: {exc}"


def read_file(path: Path, spec: tables.TableSpec, folder: Path):
    """Yield SourceRow or BadRecord for every data record of one file."""
    relative = path.relative_to(folder).as_posix()
    # utf-8-sig: a byte-order mark is not part of the first header cell
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        records = _Records(handle)
        stream = iter(records)
        first = next(stream, None)
        if first is None:
            return
        header = read_header(first, spec, relative)
        if isinstance(header, BadRecord):
            yield header
            return
        records.width = len(header)
        yield from records_to_rows(stream, spec, relative, header)


def read_header(first: tuple, spec: tables.TableSpec, relative: str):
    """The header cells of a file from its first record, or the BadRecord that skips the file."""
    number, text, header, reason = first
    if header is None:
        return BadRecord(spec.dataset, spec.name, f"{relative}:{number}",
                         f"unreadable header ({reason}): file skipped", _printable(text))
    return header


def records_to_rows(records, spec: tables.TableSpec, relative: str, header: list):
    """SourceRow or BadRecord of each data record (from _Records) of a file with this header."""
    drop_first = bool(header) and header[0].strip() == ""
    columns = header[1:] if drop_first else header
    width = len(header)
    for number, text, cells, reason in records:
        if cells is not None:
            if not cells:
                continue
            if "\0" in text:
                reason = "NUL byte"
            elif len(cells) != width:
                reason = f"wrong column count {len(cells)} (want {width})"
            elif not text.isascii() and _has_surrogates(text):
                reason = "not UTF-8"
            else:
                raw = dict(zip(columns, cells[1:] if drop_first else cells))
                try:
                    row = normalise(spec, raw)
                except BadRow as exc:
                    reason = str(exc)
                else:
                    yield SourceRow(spec, row, f"{relative}:{number}")
                    continue
        yield BadRecord(spec.dataset, spec.name, f"{relative}:{number}", reason, _printable(text))


def read_folder(folder, dataset: str):
    """Every row of every table file, in file then line order."""
    folder = Path(folder)
    files = discover(folder, dataset)
    if not files:
        raise FileNotFoundError(f"no {dataset} table files in {folder}")
    for path, spec in files:
        yield from read_file(path, spec, folder)
