"""CSV files as text cells for the batch computations, with their unreadable lines counted.

Shared by the datasets' batch computations (`datasets/*/batch.py`), and by nothing in the stream: the
batch side reads the sources on its own.
"""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import pandas as pd

_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes kept by surrogateescape

# Limits of docs/readings.md ("CSV records"), written here again: the batch side
# must not borrow the reader it checks.
MAX_RECORD_LINES = 50  # physical lines one record with a quoted cell may span
MAX_RECORD_BYTES = 1 << 20  # bytes it may span
MAX_CELL_CHARS = 64 * 1024  # a longer cell is a broken file, not data

# One quoted cell from its opening quote: content (doubled quotes inside) and
# the closing quote, empty when the text ends first (the cell is still open).
_QUOTED = re.compile(r'"([^"]*(?:""[^"]*)*)("?)')
_PLAIN = re.compile(r'[^",\r\n]*')
# A whole record in that shape, tried first: most quoted records are sound, and
# then the csv module splits them faster than a walk over their cells.
_CELL = r'(?:"[^"]*(?:""[^"]*)*"|[^",\r\n]*)'
_SOUND = re.compile(rf"{_CELL}(?:,{_CELL})*(?:\r\n|\n|\r)?")
_OPEN, _STRAY = "open", "stray"


def _cells(text: str):
    """Cells of one record's text (its line ends included), `_OPEN` when it ends
    inside a quoted cell, `_STRAY` when a quote breaks the RFC 4180 shape."""
    if _SOUND.fullmatch(text):
        try:
            return next(csv.reader((text,)))
        except csv.Error:  # a cell past the csv module's size limit: walk it below
            pass
    cells, pos, end = [], 0, len(text)
    while True:
        if text.startswith('"', pos):
            match = _QUOTED.match(text, pos)
            if not match[2]:
                return _OPEN
            cells.append(match[1].replace('""', '"'))
        else:
            match = _PLAIN.match(text, pos)
            cells.append(match[0])
        pos = match.end()
        if pos < end and text[pos] == ",":
            pos += 1
        elif pos == end or text[pos:] in ("\n", "\r\n", "\r"):
            return cells
        else:
            return _STRAY


def _quoted_record(lines: list[str], start: int, width: int | None):
    """The record that starts at lines[start], a line with a quote: (index of the
    line after it, its cells or the reason it is bad).

    Lines are joined only while the quote count is odd (a quoted cell is open).
    A cell that does not close within the limits, or closes into a record that
    is no record of `width` cells, makes the first line alone bad: the caller
    goes on at the next line, so one stray quote costs one row.
    """
    first = lines[start]
    cells = _cells(first)
    if cells is _STRAY:
        return start + 1, "quote"
    if cells is not _OPEN:
        return start + 1, cells
    stop, quotes = start + 1, first.count('"')
    size = len(first.encode("utf-8", "surrogateescape"))
    while quotes % 2:
        if stop == len(lines) or stop - start >= MAX_RECORD_LINES or size > MAX_RECORD_BYTES:
            return start + 1, "unterminated"
        quotes += lines[stop].count('"')
        size += len(lines[stop].encode("utf-8", "surrogateescape"))
        stop += 1
    cells = _cells("".join(lines[start:stop])) if size <= MAX_RECORD_BYTES else _STRAY
    if isinstance(cells, str) or (width is not None and len(cells) != width):
        return start + 1, "unterminated"
    return stop, cells


def _bad_reason(cells: list[str], width: int, measured: list[int]) -> str | None:
    """Why a record split into cells is no row: the first reason, in the order the
    stream's reader checks them, so that both sides count a row under one reason."""
    text = "".join(cells)
    if "\0" in text:
        return "nul"
    if len(cells) != width:
        return "columns"
    if _UNDECODABLE.search(text):
        return "encoding"
    if any(len(cells[i]) > MAX_CELL_CHARS for i in measured):
        return "oversized"
    return None


def read_csv_cells(path: Path, dtype=object) -> tuple[pd.DataFrame, int, Counter]:
    """One CSV file as text cells, its number of rows and its unreadable rows.

    A record is a physical line (ends: \\n, \\r\\n or \\r), or several while a
    quoted cell is open (see `_quoted_record`); blank lines are not rows.  Bad,
    by reason: a quote inside an unquoted cell ("quote"), a quoted cell that
    does not close ("unterminated"), a NUL byte ("nul"), a cell count other
    than the header's ("columns"), bytes that are not UTF-8 ("encoding"), a
    cell of a named column longer than MAX_CELL_CHARS ("oversized").  An
    unreadable header makes the whole file one bad row.  The first column is
    dropped when its header is empty (a pandas index).
    """
    data = path.read_bytes()
    try:
        text, clean = data.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        text, clean = data.decode("utf-8-sig", errors="surrogateescape"), False
    lines = io.StringIO(text, newline="").readlines()
    if not lines:
        return pd.DataFrame(), 0, Counter()
    if '"' in lines[0]:
        index, header = _quoted_record(lines, 0, None)
        if isinstance(header, str):
            return pd.DataFrame(), 1, Counter(header=1)
    else:
        index, header = 1, lines[0].rstrip("\r\n").split(",") if lines[0].rstrip("\r\n") else []
    width = len(header)
    drop_first = bool(header) and header[0].strip() == ""
    # Cells whose size counts: named columns (the last of equal names), not the index.
    named = {name: i for i, name in enumerate(header)
             if name and not name.startswith("Unnamed") and not (drop_first and i == 0)}
    measured = sorted(named.values())
    suspect = "\0" in text or not clean
    good, bad, rows, count = [], Counter(), 0, len(lines)
    while index < count:
        line = lines[index]
        start = index
        if '"' in line:
            index, cells = _quoted_record(lines, index, width)
            if isinstance(cells, str):
                rows += 1
                bad[cells] += 1
                continue
        else:
            index += 1
            line = line.rstrip("\r\n")
            if not line:
                continue
            cells = line.split(",")
        # A cell can only be too long in a long line or a record of several lines.
        if suspect or index - start > 1 or len(line) > MAX_CELL_CHARS:
            reason = _bad_reason(cells, width, measured)
        else:
            reason = "columns" if len(cells) != width else None
        rows += 1
        if reason is None:
            good.append(cells)
        else:
            bad[reason] += 1
    frame = pd.DataFrame(good, columns=range(width), dtype=dtype)
    frame.columns = header
    if drop_first:
        frame = frame.iloc[:, 1:]
    return frame, rows, bad
