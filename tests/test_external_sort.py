"""A CSV folder sorted on disk in runs (replay.external_sort) comes out in exactly the in-memory order."""
from __future__ import annotations

import gc
import os
import tempfile

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import datasets
from contract import tables
from contract.rows import Row
from replay.external_sort import sort_externally
from replay.merge import in_event_order
from replay.sources.base import BadRecord, SourceRow

TIMES = st.one_of(st.none(), st.integers(min_value=0, max_value=4))  # few distinct times: many ties


@st.composite
def source_items(draw):
    """Rows of one dataset's tables and bad records, in read order, each with an origin of its own."""
    dataset = draw(st.sampled_from(["storj", "ucn"]))
    specs = list(datasets.get(dataset).tables.values())
    items = []
    for number in range(draw(st.integers(min_value=0, max_value=60))):
        origin = f"file.csv:{number}"
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            items.append(BadRecord(dataset, "bbr", origin, "wrong column count 3 (want 5)", "a,b,c"))
            continue
        spec = draw(st.sampled_from(specs))
        values = {"id": draw(st.one_of(st.none(), st.integers(min_value=0, max_value=3))), "n": number}
        items.append(SourceRow(spec, Row(f"k{number % 5}", draw(TIMES), f"e{number}", values), origin))
    return items


def _in_memory_order(items: list) -> list:
    """What a replay of a CSV folder published before runs: bad records in read order, then the rows sorted."""
    bad = [item for item in items if isinstance(item, BadRecord)]
    return [*bad, *in_event_order([item for item in items if not isinstance(item, BadRecord)])]


def _plain(items) -> list:
    """The items with values read back from disk (encoded JSON, an orjson.Fragment) decoded again."""
    def plain(item):
        values = getattr(getattr(item, "row", None), "values", None)
        if isinstance(values, orjson.Fragment):
            return SourceRow(item.spec, item.row._replace(values=orjson.loads(orjson.dumps(values))), item.origin)
        return item
    return [plain(item) for item in items]


def _files_under(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names)


@settings(max_examples=300, deadline=None)
@given(source_items(), st.integers(min_value=1, max_value=12), st.integers(min_value=2, max_value=4))
def test_order_on_disk_equals_the_in_memory_order(items, run_rows, fan_in):
    with tempfile.TemporaryDirectory() as spill_dir:
        ordered, count = sort_externally(iter(items), run_rows, spill_dir, fan_in=fan_in)
        result = list(ordered)
        assert os.listdir(spill_dir) == []
    expected = _in_memory_order(items)
    assert count == len(items)
    assert [item.origin for item in result] == [item.origin for item in expected]
    assert _plain(result) == expected
    # what the publisher sends of a row read back from disk is byte for byte what it sends of the row in memory
    assert ([orjson.dumps(item.row.values) for item in result if isinstance(item, SourceRow)]
            == [orjson.dumps(item.row.values) for item in expected if isinstance(item, SourceRow)])


def _rows(n: int) -> list:
    spec = tables.table("storj", "bbr")
    return [SourceRow(spec, Row(f"p{i % 3}", (n - i) // 2, f"e{i}", {"i": i}), f"bbr.csv:{i}") for i in range(n)]


def test_runs_are_spilled_while_read_and_removed_once_consumed(tmp_path):
    ordered, count = sort_externally(iter(_rows(40)), 6, str(tmp_path))
    assert count == 40
    first = next(ordered)
    assert len(_files_under(tmp_path)) == 6  # 6 runs of 6 on disk; the last 4 rows stay in memory
    assert _plain([first, *ordered]) == _in_memory_order(_rows(40))
    assert os.listdir(tmp_path) == []


def test_runs_are_removed_when_the_stream_is_closed_early(tmp_path):
    ordered, _ = sort_externally(iter(_rows(40)), 6, str(tmp_path))
    next(ordered)
    ordered.close()
    assert os.listdir(tmp_path) == []
    assert list(ordered) == []


def test_runs_are_removed_when_the_stream_is_dropped_unread(tmp_path):
    ordered, _ = sort_externally(iter(_rows(40)), 6, str(tmp_path))
    assert os.listdir(tmp_path) != []
    del ordered
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_runs_are_removed_when_reading_the_source_fails(tmp_path):
    def failing():
        yield from _rows(20)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        sort_externally(failing(), 6, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_runs_merged_in_several_passes_keep_the_order(tmp_path):
    ordered, _ = sort_externally(iter(_rows(100)), 3, str(tmp_path), fan_in=2)
    assert _plain(ordered) == _in_memory_order(_rows(100))
    assert os.listdir(tmp_path) == []


def test_a_source_that_fits_one_run_never_touches_the_disk(tmp_path):
    ordered, count = sort_externally(iter(_rows(40)), 40, str(tmp_path))
    assert os.listdir(tmp_path) == []
    assert (list(ordered), count) == (_in_memory_order(_rows(40)), 40)


def test_csv_folder_stream_sorted_in_small_runs_equals_the_in_memory_read(tmp_path, monkeypatch):
    """The replay's source stream of a generated dump with bad rows, run size and spill folder from the
    environment, against the folder read and sorted in memory."""
    from datasets.storj.generate import generate_storj
    from replay.job import read_source, source_stream

    folder, spill = tmp_path / "dump", tmp_path / "spill"
    spill.mkdir()
    generate_storj(folder, seed=2, scale=0.01, bad_rows=7)
    monkeypatch.setenv("FSP_SORT_RUN_ROWS", "97")
    monkeypatch.setenv("FSP_SORT_DIR", str(spill))
    items, total = source_stream("storj", str(folder))
    first = next(items)
    assert len(_files_under(spill)) == (total - 1) // 97  # the last run stays in memory
    ordered, bad = read_source("storj", str(folder))
    assert len(bad) == 7 and total == len(ordered) + len(bad)
    assert _plain([first, *items]) == [*bad, *ordered]
    assert os.listdir(spill) == []
