"""Field-by-field comparison of the batch recomputation with the snapshots in Redis."""
from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class Mismatch:
    entity: str
    entity_id: str
    field: str
    expected: object
    actual: object

    def __str__(self) -> str:
        return f"{self.entity} {self.entity_id} {self.field}: expected {self.expected!r}, got {self.actual!r}"


_MISSING = "<missing>"


def compare(expected: dict[str, dict], actual: dict[str, dict]) -> list[Mismatch]:
    """`expected`/`actual`: entity -> id -> {field: value}. `_meta` is not a feature and is ignored."""
    out = []
    for entity, exp_entities in expected.items():
        act_entities = actual.get(entity, {})
        for entity_id in sorted(set(exp_entities) | set(act_entities)):
            exp, act = exp_entities.get(entity_id), act_entities.get(entity_id)
            if exp is None or act is None:
                out.append(Mismatch(entity, entity_id, "<snapshot>", _MISSING if exp is None else "present",
                                    _MISSING if act is None else "present"))
                continue
            for field in sorted(set(exp) | set(act)):
                if field == "_meta":
                    continue
                e, a = exp.get(field, _MISSING), act.get(field, _MISSING)
                if _json(e) != _json(a):  # exact: 1 and 1.0 differ, maps compare with sorted keys
                    out.append(Mismatch(entity, entity_id, field, e, a))
    return out


def _json(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
