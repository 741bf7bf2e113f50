"""`fsp publish`: JSON rows from a file or stdin to one table's topic, as a live producer sends them.

A line is one row object or an array of rows (SPEC §2). Each row goes out
keyed by its routing key (the table's key column, or the key given), one
message per row, partitioned with murmur2 as the replay does: the stream
would re-place a row anywhere else (stream.runtime.stages), but placed right
it is applied at once. A row that breaks the contract is still published:
the stream dead-letters it with its reason, as it does for any producer;
the summary counts such rows and says the first reason. A line that is no
row at all (not JSON, not an object) is skipped and reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from contract import tables
from contract.rows import BadRow, normalise


class PublishError(ValueError):
    """A line that is no row: one line of text says which and why."""


@dataclass
class PublishSummary:
    topic: str
    rows: int = 0
    skipped: list = field(default_factory=list)  # (line number, reason) of lines that are no rows
    breaking: list = field(default_factory=list)  # (line number, reason) of rows the stream will dead-letter


def rows_of_line(line: str, number: int) -> list[dict]:
    """The rows of one input line (an object or an array of objects); [] for a blank line."""
    text = line.strip()
    if not text:
        return []
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PublishError(f"line {number}: not JSON ({exc})") from None
    rows = value if isinstance(value, list) else [value]
    for row in rows:
        if not isinstance(row, dict):
            raise PublishError(f"line {number}: a row must be a JSON object, not {type(row).__name__}")
    return rows


def key_of(spec, row: dict, given: str | None) -> tuple[str, str | None]:
    """The message key of a row and, when it breaks the contract, why (the stream will dead-letter it)."""
    try:
        normal = normalise(spec, row)
    except BadRow as exc:
        raw = row.get(spec.key)
        return (given if given is not None else "" if raw is None else str(raw)), str(exc)
    return (given if given is not None else normal.key), None


def publish_lines(lines, dataset: str, table: str, producer, key: str | None = None) -> PublishSummary:
    """Publish every row of `lines` (an iterable of text lines) to `dataset.table` through `producer`
    (replay.publisher.FastProducer or anything with send/flush). Lines that are no rows are skipped and
    reported; the caller decides whether that fails the run."""
    spec = tables.table(dataset, table)
    topic = f"{dataset}.{table}"
    summary = PublishSummary(topic)
    for number, line in enumerate(lines, 1):
        try:
            rows = rows_of_line(line, number)
        except PublishError as exc:
            summary.skipped.append((number, str(exc)))
            continue
        for row in rows:
            row_key, breaks = key_of(spec, row, key)
            if breaks is not None:
                summary.breaking.append((number, breaks))
            producer.send(topic, value=orjson.dumps(row), key=row_key.encode())
            summary.rows += 1
    producer.flush()
    return summary
