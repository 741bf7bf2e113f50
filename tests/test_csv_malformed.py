"""Malformed CSV input: each bad record is reported at its own line, every good line is still read.

The files follow the storj dump layout (`{region}_{file}.csv`, a first unnamed
index column). A broken line must cost that line alone: a stray or
unterminated quote may not swallow the lines after it.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import tables
from contract.rows import MAX_VALUE_CHARS, BadRow, normalise
from replay.sources.base import BadRecord, SourceRow
from replay.sources.csv_folder import MAX_RECORD_BYTES, MAX_RECORD_LINES, read_folder

PAYMENTS = "ap_node_payments.csv"
PAYMENTS_HEADER = b",period,node_id,amount\n"
BBR = "bucket_data/eu_bbr.csv"
BBR_HEADER = b",interval_start,action,inline,settled,project_id\n"


def good(index: int, node: str | None = None) -> bytes:
    """A valid payments line; its node id tells the lines apart."""
    return f"{index},2020-03-01,{node or f'n{index}'},{index * 10}\n".encode()


def write(folder: Path, lines: list[bytes], name: str = PAYMENTS, header: bytes = PAYMENTS_HEADER) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"".join(lines))


def read(folder: Path) -> tuple[dict[str, dict], dict[str, str], dict[str, str]]:
    """(values by origin of good rows, reason by origin of bad records, original text by origin)."""
    rows, reasons, originals = {}, {}, {}
    for item in read_folder(folder, "storj"):
        if isinstance(item, SourceRow):
            assert item.origin not in rows
            rows[item.origin] = item.row.values
        else:
            assert isinstance(item, BadRecord) and item.origin not in reasons
            reasons[item.origin] = item.reason
            originals[item.origin] = item.original
    return rows, reasons, originals


def at(line: int, name: str = PAYMENTS) -> str:
    return f"{name}:{line}"


# --- quotes ----------------------------------------------------------------------

@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_unterminated_quote_costs_its_own_line_only(tmp_path, newline):
    lines = [good(0), good(1), b'2,2020-03-01,"n2,20\n', *(good(i) for i in range(3, 10))]
    write(tmp_path, [line.replace(b"\n", newline) for line in lines])
    rows, reasons, originals = read(tmp_path)
    assert reasons == {at(4): "unterminated quote"}
    assert originals[at(4)] == '2,2020-03-01,"n2,20'
    assert sorted(rows) == sorted(at(i + 2) for i in range(10) if i != 2)
    assert rows[at(5)]["node_id"] == "n3"


def test_unterminated_quote_on_the_last_line(tmp_path):
    write(tmp_path, [good(0), good(1), b'2,2020-03-01,"n2,20'])
    rows, reasons, _ = read(tmp_path)
    assert reasons == {at(4): "unterminated quote"}
    assert sorted(rows) == [at(2), at(3)]


def test_unterminated_quote_does_not_pair_with_a_later_quote(tmp_path):
    # The later line's quote would close the first one: the joined text is no valid record.
    write(tmp_path, [good(0), b'1,2020-03-01,"n1,10\n', good(2), good(3), b'4,2020-03-01,n"4,40\n', good(5)])
    rows, reasons, _ = read(tmp_path)
    assert reasons == {at(3): "unterminated quote", at(6): "stray quote"}
    assert sorted(rows) == [at(2), at(4), at(5), at(7)]


def test_quote_closing_into_the_wrong_shape_is_unterminated(tmp_path):
    # Closing the quote would give five cells for a four-cell header.
    write(tmp_path, [b'0,2020-03-01,"n0\n', good(1), b'2,n2",2020-03-01,20\n', good(3)])
    rows, reasons, _ = read(tmp_path)
    assert reasons == {at(2): "unterminated quote", at(4): "stray quote"}
    assert sorted(rows) == [at(3), at(5)]


def test_stray_quote_inside_an_unquoted_cell(tmp_path):
    write(tmp_path, [good(0), b'1,2020-03-01,n"1,10\n', good(2), b'3,2020-03-01,n"3"x,30\n', good(4)])
    rows, reasons, originals = read(tmp_path)
    assert reasons == {at(3): "stray quote", at(5): "stray quote"}
    assert originals[at(3)] == '1,2020-03-01,n"1,10'
    assert sorted(rows) == [at(2), at(4), at(6)]


def test_quoted_cells_with_an_embedded_newline_are_one_row(tmp_path):
    write(tmp_path, [good(0), b'1,2020-03-01,"N1\nsecond, line",10\n', good(2),
                     b'3,2020-03-01,"n3 ""quoted""\r\nand more",30\n', good(4), b'5,2020-03-01,"a,b",50\n'])
    rows, reasons, _ = read(tmp_path)
    assert reasons == {}
    assert sorted(rows) == [at(2), at(3), at(5), at(6), at(8), at(9)]
    assert rows[at(3)]["node_id"] == "n1\nsecond, line"
    assert rows[at(6)]["node_id"] == 'n3 "quoted"\r\nand more'
    assert rows[at(8)]["node_id"] == "n4"
    assert rows[at(9)]["node_id"] == "a,b"


def test_quote_open_for_more_than_the_line_limit_is_unterminated(tmp_path):
    filler = [good(i) for i in range(1, MAX_RECORD_LINES + 1)]
    closing = f"{MAX_RECORD_LINES + 1},tail\",10\n".encode()
    write(tmp_path, [b'0,2020-03-01,"head\n', *filler, closing])
    write(tmp_path, [b'0,2020-03-01,"head\n', *filler[:3], b'tail",10\n'], name="eu_node_payments.csv")
    rows, reasons, _ = read(tmp_path)
    last = MAX_RECORD_LINES + 3
    assert reasons == {at(2): "unterminated quote", at(last): "stray quote"}
    assert [origin for origin in rows if origin.startswith(PAYMENTS)] == [at(i) for i in range(3, last)]
    # Within the limit the same shape is a legitimate cell spanning lines.
    within = at(2, "eu_node_payments.csv")
    assert [origin for origin in rows if not origin.startswith(PAYMENTS)] == [within]
    assert rows[within]["node_id"] == "head\n1,2020-03-01,n1,10\n2,2020-03-01,n2,20\n3,2020-03-01,n3,30\ntail"


def test_quote_open_for_more_than_the_byte_limit_is_unterminated(tmp_path):
    half = b"x" * (MAX_RECORD_BYTES // 2 + 1) + b"\n"
    write(tmp_path, [b'0,2020-03-01,"head\n', half, half, b'tail",10\n', good(5)])
    rows, reasons, originals = read(tmp_path)
    assert reasons == {at(2): "unterminated quote", at(3): "wrong column count 1 (want 4)",
                       at(4): "wrong column count 1 (want 4)", at(5): "stray quote"}
    assert originals[at(2)] == '0,2020-03-01,"head'
    assert list(rows) == [at(6)]


# --- cells, bytes and values ----------------------------------------------------------

def test_wrong_column_count(tmp_path):
    header = BBR_HEADER
    valid = b"0,2021-04-20 17:00:00,1,0,100,p0\n"
    write(tmp_path, [valid, b"1,2021-04-20 17:00:00,1,0,100,p1,extra\n", b"2,2021-04-20 17:00:00,1,0,100\n",
                     b"\n", valid.replace(b"p0", b"p3")], name=BBR, header=header)
    rows, reasons, originals = read(tmp_path)
    assert reasons == {at(3, BBR): "wrong column count 7 (want 6)", at(4, BBR): "wrong column count 5 (want 6)"}
    assert originals[at(3, BBR)] == "1,2021-04-20 17:00:00,1,0,100,p1,extra"
    assert sorted(rows) == [at(2, BBR), at(6, BBR)]  # the blank line is no record


def test_bytes_that_are_not_utf8(tmp_path):
    write(tmp_path, [good(0), b"1,2020-03-01,n\xff\xfe1,10\n", good(2, "n\u00e9")])
    rows, reasons, originals = read(tmp_path)
    assert reasons == {at(3): "not UTF-8"}
    assert originals[at(3)] == "1,2020-03-01,n\ufffd\ufffd1,10"
    assert sorted(rows) == [at(2), at(4)] and rows[at(4)]["node_id"] == "n\u00e9"


def test_nul_byte(tmp_path):
    write(tmp_path, [good(0), b"1,2020-03-01,n\x001,10\n", b'2,2020-03-01,"n\x002",20\n', good(3)])
    rows, reasons, _ = read(tmp_path)
    assert reasons == {at(3): "NUL byte", at(4): "NUL byte"}
    assert sorted(rows) == [at(2), at(5)]


def test_oversized_cell(tmp_path):
    big = b"n" * (MAX_VALUE_CHARS + 1)
    write(tmp_path, [good(0), b"1,2020-03-01," + big + b",10\n", b'2,2020-03-01,"' + big + b'",20\n',
                     b"3,2020-03-01,n3," + b"1" * (MAX_VALUE_CHARS + 1) + b"\n", good(4, "n" * MAX_VALUE_CHARS)])
    rows, reasons, originals = read(tmp_path)
    reason = f"oversized value in column node_id ({MAX_VALUE_CHARS + 1} chars)"
    assert reasons == {at(3): reason, at(4): reason,
                       at(5): f"oversized value in column amount ({MAX_VALUE_CHARS + 1} chars)"}
    assert len(originals[at(3)]) > MAX_VALUE_CHARS
    assert sorted(rows) == [at(2), at(6)]


@pytest.mark.parametrize("key", ["", "   ", '""'])
def test_null_or_blank_key(tmp_path, key):
    write(tmp_path, [good(0), f"1,2020-03-01,{key},10\n".encode(), good(2)])
    rows, reasons, _ = read(tmp_path)
    assert reasons == {at(3): "missing key node_id"}
    assert sorted(rows) == [at(2), at(4)]


@pytest.mark.parametrize("stamp", ["not-a-date", "2021-13-45", "20200301", ""])
def test_unparsable_timestamp(tmp_path, stamp):
    write(tmp_path, [good(0), f"1,{stamp},n1,10\n".encode(), good(2)])
    rows, reasons, _ = read(tmp_path)
    assert list(reasons) == [at(3)]
    assert reasons[at(3)].endswith("in period") and ("unparsable" in reasons[at(3)] or "missing" in reasons[at(3)])
    assert sorted(rows) == [at(2), at(4)]


# --- whole files -------------------------------------------------------------------

def test_empty_file(tmp_path):
    (tmp_path / PAYMENTS).write_bytes(b"")
    assert read(tmp_path) == ({}, {}, {})


def test_header_only_file(tmp_path):
    write(tmp_path, [])
    write(tmp_path, [], name=BBR, header=BBR_HEADER.rstrip(b"\n"))
    assert read(tmp_path) == ({}, {}, {})


def test_unreadable_header_skips_the_file_with_one_bad_record(tmp_path):
    write(tmp_path, [good(0)], header=b',"period,node_id,amount\n')
    write(tmp_path, [good(0)], name="eu_node_payments.csv")
    rows, reasons, _ = read(tmp_path)
    assert reasons == {at(1): "unreadable header (unterminated quote): file skipped"}
    assert list(rows) == ["eu_node_payments.csv:2"]


# --- property: any mix of good and bad lines ------------------------------------------

BAD_KINDS = {
    "unterminated": "unterminated quote",
    "stray": "stray quote",
    "extra cell": "wrong column count 5 (want 4)",
    "missing cell": "wrong column count 3 (want 4)",
    "not utf8": "not UTF-8",
    "nul": "NUL byte",
    "oversized": f"oversized value in column node_id ({MAX_VALUE_CHARS + 1} chars)",
    "blank key": "missing key node_id",
    "bad time": "unparsable time 'not-a-date' in period",
}
words = st.text("abcdefXYZ0123 ", min_size=1, max_size=8).map(str.strip).filter(bool)


@st.composite
def bad_line(draw, index: int) -> tuple[str, bytes]:
    """One malformed line. Quotes are never placed where they could legitimately close a
    quote opened lines before (right before a comma or the line end)."""
    kind = draw(st.sampled_from(sorted(BAD_KINDS)))
    text = draw(words)
    cells = [str(index), "2020-03-01", f"b{index}{text}", str(index + 10)]
    if kind == "unterminated":
        column = draw(st.integers(0, 3))
        cells[column] = f'"{cells[column]}'
    elif kind == "stray":
        column = draw(st.sampled_from([2, 3]))
        cut = draw(st.integers(1, len(cells[column]) - 1))
        cells[column] = f'{cells[column][:cut]}"{cells[column][cut:]}'
    elif kind == "extra cell":
        cells.append(text)
    elif kind == "missing cell":
        cells.pop()
    elif kind == "nul":
        cells[2] += "\0"
    elif kind == "oversized":
        cells[2] = "o" * (MAX_VALUE_CHARS + 1)
    elif kind == "blank key":
        cells[2] = draw(st.sampled_from(["", " ", '""']))
    elif kind == "bad time":
        cells[1] = "not-a-date"
    line = ",".join(cells).encode()
    if kind == "not utf8":
        line = line.replace(b"b", b"b\xff", 1)
    return kind, line + b"\n"


@st.composite
def good_line(draw, index: int) -> tuple[str, bytes]:
    """A valid line, its node id sometimes in a quoted cell with a comma or a doubled quote."""
    text = draw(words)
    node, cell = draw(st.sampled_from([
        (f"g{index}{text}", f"g{index}{text}"),
        (f"g{index},{text}", f'"g{index},{text}"'),
        (f'g{index}"{text}', f'"g{index}""{text}"'),
    ]))
    return node.lower(), f"{index},2020-03-01,{cell},{index}\n".encode()


@st.composite
def mixed_file(draw):
    lines, expected_rows, expected_bad = [], {}, {}
    for index in range(draw(st.integers(0, 60))):
        number = index + 2  # the header is line 1
        if draw(st.integers(0, 3)) == 0:
            kind, line = draw(bad_line(index))
            expected_bad[at(number)] = BAD_KINDS[kind]
        else:
            node, line = draw(good_line(index))
            expected_rows[at(number)] = node
        lines.append(line)
    return lines, expected_rows, expected_bad


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mixed_file())
def test_every_good_line_is_read_once_and_every_bad_line_reported_at_its_line(tmp_path_factory, case):
    lines, expected_rows, expected_bad = case
    folder = tmp_path_factory.mktemp("mixed")
    write(folder, lines)
    rows, reasons, _ = read(folder)
    assert {origin: values["node_id"] for origin, values in rows.items()} == expected_rows
    assert reasons == expected_bad


# --- normalise --------------------------------------------------------------------

PAYMENT = tables.table("storj", "payments")


def test_normalise_accepts_a_value_at_the_limit_and_rejects_one_past_it():
    at_limit = "a" * MAX_VALUE_CHARS
    row = normalise(PAYMENT, {"period": "2020-03-01", "node_id": at_limit, "amount": "1"})
    assert row.key == at_limit
    for column, value in [("node_id", at_limit + "a"), ("period", "2020-03-01" + " " * MAX_VALUE_CHARS),
                          ("amount", "9" * (MAX_VALUE_CHARS + 1)), ("extra", "x" * (MAX_VALUE_CHARS + 1))]:
        raw = {"period": "2020-03-01", "node_id": "n", "amount": "1", column: value}
        with pytest.raises(BadRow, match=rf"^oversized value in column {column} \({len(value)} chars\)$"):
            normalise(PAYMENT, raw)


def test_normalise_refuses_an_integer_too_long_to_convert():
    with pytest.raises(BadRow, match="wrong type in amount"):
        normalise(PAYMENT, {"period": "2020-03-01", "node_id": "n", "amount": "9" * 5_000})


def test_a_byte_order_mark_is_not_part_of_the_first_header(tmp_path):
    """Spreadsheet exports often start with a BOM; it must not become part of the first column's name."""
    from replay.sources.csv_folder import read_folder

    folder = tmp_path / "dump"
    folder.mkdir()
    (folder / "eu_users_a.csv").write_bytes(
        "\ufeffid,email_hash,created_at\nu1,e1,2021-01-01T00:00:00\n".encode("utf-8"))
    items = list(read_folder(folder, "storj"))
    assert [type(i).__name__ for i in items] == ["SourceRow"]
    assert items[0].row.key == "u1" and set(items[0].row.values) == {"id", "email_hash", "created_at"}
