"""CSV files as text cells for the batch computations, with their unreadable lines counted.

Shared by `batch_storj` and `batch_ucn` (and by nothing in the stream: the
batch side reads the sources on its own).
"""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import pandas as pd

_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes kept by surrogateescape


def read_csv_cells(path: Path, dtype=object) -> tuple[pd.DataFrame, int, Counter]:
    """One CSV file as text cells, its number of rows and its unreadable rows.

    Blank lines are not rows.  A row with a cell count other than the
    header's, or with bytes that are not UTF-8, is bad.  The first column is
    dropped when its header is empty (a pandas index).
    """
    data = path.read_bytes()
    try:
        text, clean = data.decode("utf-8-sig"), True
    except UnicodeDecodeError:
        text, clean = data.decode("utf-8-sig", errors="surrogateescape"), False
    lines = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    if not lines:
        return pd.DataFrame(), 0, Counter()
    header, body = lines[0], lines[1:]
    good = [row for row in body if len(row) == len(header)]
    bad = Counter(columns=len(body) - len(good))
    if not clean:
        decodable = [row for row in good if not _UNDECODABLE.search("".join(row))]
        bad["encoding"] = len(good) - len(decodable)
        good = decodable
    frame = pd.DataFrame(good, columns=range(len(header)), dtype=dtype)
    frame.columns = header
    if header[0].strip() == "":
        frame = frame.iloc[:, 1:]
    return frame, len(body), +bad
