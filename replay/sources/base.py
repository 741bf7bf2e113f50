"""What every source yields: normalised rows with their origin, or bad records with a reason."""
from __future__ import annotations

from dataclasses import dataclass

from contract.rows import Row
from contract.tables import TableSpec


@dataclass(slots=True)
class SourceRow:
    spec: TableSpec
    row: Row
    origin: str  # "file:line" or "table:primary key"


@dataclass(slots=True)
class BadRecord:
    dataset: str
    table: str
    origin: str
    reason: str
    original: str

    def as_dict(self) -> dict:
        return {"table": self.table, "origin": self.origin, "reason": self.reason, "original": self.original}
