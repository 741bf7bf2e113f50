"""Following CSV files (replay.sources.csv_tail): a file read in pieces as it grows gives the rows of the
same file read at once; a partial last line or an open quote waits. No broker."""
from __future__ import annotations

import codecs
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import tables
from replay.sources.base import SourceRow
from replay.sources.csv_folder import read_file
from replay.sources.csv_tail import FileCursor, FolderCursor, read_folder_new, read_new

SPEC = tables.table("ucn", "dnsreqs")
HEADER = ",id,devid,ts,query,user_req"


def _seen(item):
    if isinstance(item, SourceRow):
        return ("row", item.origin, item.row.eid, item.row.values)
    return ("bad", item.origin, item.reason, item.original)


def _tail(path: Path, cursor: FileCursor, warn=None):
    items = []

    def collect():
        return (yield from read_new(path, SPEC, path.parent, cursor, warn))

    generator = collect()
    while True:
        try:
            items.append(next(generator))
        except StopIteration as done:
            return items, done.value


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


query_cell = st.one_of(st.text(alphabet="abc.-", max_size=6),
                       st.text(alphabet='ab, "\n', max_size=8).map(_quoted),
                       st.text(alphabet="ab \r\n", max_size=4).map(lambda t: _quoted(t.replace("\r", "\r\n"))))
good_line = st.builds(lambda n, q, flag: f"{n},{n},{n % 3},2015-11-04 19:46:{n % 60:02d},{q},{flag}",
                      st.integers(0, 10_000), query_cell, st.sampled_from(["True", "False", ""]))
bad_line = st.sampled_from(["1,2,3", "x,y", 'a"b"c,d', "9,9,1,not a time,q,False", ""])
line = st.one_of(good_line, good_line, good_line, bad_line)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(line, max_size=12), endings=st.lists(st.sampled_from(["\n", "\r\n"]), min_size=13,
                                                           max_size=13),
       cuts=st.lists(st.integers(0, 2000), max_size=6), bom=st.booleans())
def test_a_file_read_in_pieces_gives_the_rows_of_the_file_read_at_once(tmp_path, lines, endings, cuts, bom):
    text = "".join(part + ending for part, ending in zip([HEADER, *lines], endings))
    data = (codecs.BOM_UTF8 if bom else b"") + text.encode()
    path = tmp_path / "dnsreqs.csv"
    path.write_bytes(data)
    whole = [_seen(item) for item in read_file(path, SPEC, tmp_path)]
    path.write_bytes(b"")
    cursor, pieces, written = FileCursor(), [], 0
    for cut in sorted(min(c, len(data)) for c in cuts) + [len(data)]:
        with open(path, "ab") as handle:
            handle.write(data[written:cut])
        written = max(written, cut)
        items, cursor = _tail(path, cursor)
        pieces += [_seen(item) for item in items]
        cursor = FileCursor.from_state(json.loads(json.dumps(cursor.to_state())))
    assert pieces == whole
    assert cursor.offset == len(data)


def test_a_partial_last_line_waits_for_its_end(tmp_path):
    path = tmp_path / "dnsreqs.csv"
    path.write_text(f"{HEADER}\n0,1,1,2015-11-04 19:46:54,a.com,False\n1,2,1,2015-11-04 19:4")
    items, cursor = _tail(path, FileCursor())
    assert [item.row.eid for item in items] == ["dnsreqs:1"]
    assert cursor.offset == len(f"{HEADER}\n0,1,1,2015-11-04 19:46:54,a.com,False\n") and cursor.line == 2
    assert _tail(path, cursor)[0] == []  # still partial
    with open(path, "a") as handle:
        handle.write('6:55,"b\n')  # a quoted cell goes on in the next line
    assert _tail(path, cursor)[0] == []
    with open(path, "a") as handle:
        handle.write('.com",True\n')
    items, cursor = _tail(path, cursor)
    assert [(item.origin, item.row.values["query"]) for item in items] == [("dnsreqs.csv:3", "b\n.com")]
    assert cursor.line == 4


def test_a_file_truncated_or_replaced_is_read_again_with_a_warning(tmp_path):
    path = tmp_path / "dnsreqs.csv"
    path.write_text(f"{HEADER}\n0,1,1,2015-11-04 19:46:54,a.com,False\n0,2,1,2015-11-04 19:46:55,b.com,False\n")
    items, cursor = _tail(path, FileCursor())
    assert len(items) == 2
    path.write_text(f"{HEADER}\n0,3,1,2015-11-04 19:46:56,c.com,False\n")
    warnings = []
    items, cursor = _tail(path, cursor, warnings.append)
    assert [item.row.eid for item in items] == ["dnsreqs:3"]
    assert warnings == ["dnsreqs.csv was replaced or truncated: read again from its start"]


def test_an_unreadable_header_skips_the_file_once(tmp_path):
    path = tmp_path / "dnsreqs.csv"
    path.write_text('a"b,c\n1,2\n')
    items, cursor = _tail(path, FileCursor())
    assert [item.reason for item in items] == ["unreadable header (stray quote): file skipped"]
    with open(path, "a") as handle:
        handle.write("3,4\n")
    assert _tail(path, cursor)[0] == [] and cursor.skipped


def test_files_that_appear_are_read_from_their_start(tmp_path):
    (tmp_path / "dnsreqs.csv").write_text(f"{HEADER}\n0,1,1,2015-11-04 19:46:54,a.com,False\n")
    cursor = FolderCursor()
    after = FolderCursor(dict(cursor.files))
    assert len(list(read_folder_new(tmp_path, "ucn", cursor, after))) == 1
    (tmp_path / "httpreqs2.csv").write_text(",id,devid,ts,req_url_host,user_url\n0,7,1,2015-11-04 19:46:58,x,True\n")
    cursor, after = after, FolderCursor(dict(after.files))
    items = list(read_folder_new(tmp_path, "ucn", cursor, after))
    assert [item.row.eid for item in items] == ["httpreqs:7"] and set(after.files) == {"dnsreqs.csv",
                                                                                        "httpreqs2.csv"}
