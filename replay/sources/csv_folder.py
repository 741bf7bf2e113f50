"""CSV folders: the storj per-region dumps and one-file-per-table folders (ucn).

Files are read in sorted order of their path relative to the folder; a first
column with an empty header (a pandas index) is dropped; a line with the
wrong number of cells or bytes that are not UTF-8 is a bad record with its
file and line, never a crash.
"""
from __future__ import annotations

import csv
from pathlib import Path

from contract import tables
from contract.rows import BadRow, normalise

from .base import BadRecord, SourceRow

csv.field_size_limit(1 << 24)


def discover(folder: Path, dataset: str) -> list[tuple[Path, tables.TableSpec]]:
    """(file, table) pairs in file order. storj: `{region}_{file}.csv` (also under bucket_data/);
    ucn: `{table}.csv`."""
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
    specs = tables.DATASETS[dataset]
    if dataset == "storj":
        _, sep, rest = stem.partition("_")
        if not sep:
            return None
        return next((s for s in specs.values() if s.file_stem == rest), None)
    try:
        return tables.table(dataset, stem)
    except KeyError:
        return None


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def read_file(path: Path, spec: tables.TableSpec, folder: Path):
    """Yield SourceRow or BadRecord for every data line of one file."""
    relative = path.relative_to(folder).as_posix()
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            return
        drop_first = bool(header) and header[0].strip() == ""
        columns = header[1:] if drop_first else header
        width = len(header)
        line = reader.line_num
        for cells in reader:
            start, line = line + 1, reader.line_num
            if not cells:
                continue
            origin = f"{relative}:{start}"
            text = ",".join(cells)
            if len(cells) != width:
                yield BadRecord(spec.dataset, spec.name, origin, f"wrong column count {len(cells)} (want {width})",
                                text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
                continue
            if _has_surrogates(text):
                yield BadRecord(spec.dataset, spec.name, origin, "not UTF-8",
                                text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
                continue
            raw = dict(zip(columns, cells[1:] if drop_first else cells))
            try:
                yield SourceRow(spec, normalise(spec, raw), origin)
            except BadRow as exc:
                yield BadRecord(spec.dataset, spec.name, origin, str(exc), text)


def read_folder(folder, dataset: str):
    """Every row of every table file, in file then line order."""
    folder = Path(folder)
    files = discover(folder, dataset)
    if not files:
        raise FileNotFoundError(f"no {dataset} table files in {folder}")
    for path, spec in files:
        yield from read_file(path, spec, folder)
