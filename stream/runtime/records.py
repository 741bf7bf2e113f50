"""Records one stage sends another, decoded straight into their types (msgspec Structs).

A stage whose internal topic carries typed records reads each message into them in one step, with no
dict in between; a message that is no such record is a mark (marks share the topic), or a bad message
that becomes a dead letter with the reason.
"""
from __future__ import annotations

from typing import Any, Union

import msgspec

from contract import wire


class TypedRecords:
    """Decodes the messages of one internal topic: one record of `record_type` (a Struct, or a union of
    Structs tagged apart) or a list of them; `what` names them in a dead letter's reason."""

    def __init__(self, record_type: Any, what: str):
        self._decoder = msgspec.json.Decoder(Union[record_type, list[record_type]])
        self.what = what

    def decode(self, value: bytes):
        """("rows", records), ("mark", mark) or ("bad", reason), as `Stage.decode` answers."""
        try:
            records = self._decoder.decode(value)
        except msgspec.DecodeError as exc:
            kind, payload = wire.decode(value)  # a mark, or no record of ours (BadMessage when not JSON)
            return (kind, payload) if kind == "mark" else ("bad", f"not a {self.what}: {exc}")
        return "rows", records if isinstance(records, list) else [records]
