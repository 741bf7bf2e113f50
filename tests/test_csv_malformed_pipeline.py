"""Malformed CSV lines end to end: replay -> broker -> worker -> Redis == the batch side's own reading.

A generated storj dump gets broken lines at known places (a stray quote, an
unterminated quote in the middle of a file and one on its last line, a NUL
byte, a wrong cell count, bytes that are not UTF-8, a cell over 64 KiB) and a
legitimate quoted cell spanning two lines. Each broken line must cost that
line alone, on both sides: the replay dead-letters it with its reason and
`file:line`, and the batch computation, which reads the files on its own,
drops the same lines and keeps every line after them (else verify differs).
"""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from datasets.storj.batch import read_tables
from datasets.storj.generate import generate_storj

pytestmark = pytest.mark.integration

OVERSIZED = 64 * 1024 + 1
WALLET = "0xmulti\nline, wallet"  # legitimate: quoted, with a line end and a comma


def _insert(path: Path, lines: dict[int, bytes]) -> None:
    """Put each line at its physical line number (1-based, the header is 1) of the changed file."""
    physical = path.read_bytes().splitlines(keepends=True)
    for number in sorted(lines):
        physical.insert(number - 1, lines[number])
    path.write_bytes(b"".join(physical))


def _quote_a_wallet(folder: Path) -> str:
    """Make WALLET (one record on two lines) the wallet of a node that no other row
    replaces and that has an operator; its email hash."""
    path = folder / "ap_nodes_a.csv"
    physical = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = physical[0].rstrip("\n").split(",")
    ids = [line.split(",")[header.index("id")].strip().lower() for nodes in folder.glob("*_nodes_a.csv")
           for line in nodes.read_text(encoding="utf-8").splitlines()[1:]]
    for number, line in enumerate(physical[1:], start=1):
        cells = line.rstrip("\n").split(",")
        node, email = cells[header.index("id")], cells[header.index("email_hash")]
        if ids.count(node.strip().lower()) == 1 and email and email == email.strip().lower():
            cells[header.index("wallet")] = '"' + WALLET.replace('"', '""') + '"'
            physical[number] = ",".join(cells) + "\n"
            path.write_text("".join(physical), encoding="utf-8")
            return email
    raise AssertionError("no node to give a quoted wallet")


def _corrupt(folder: Path) -> dict[str, str]:
    """Break the dump at known places; the expected dead letters as {origin: reason}."""
    bad = {}
    eu_payments = folder / "eu_node_payments.csv"
    _insert(eu_payments, {60: b'9001,2020-03-01,"unterminated,1000\n'})  # good lines follow it
    bad["eu_node_payments.csv:60"] = "unterminated quote"
    with eu_payments.open("ab") as handle:  # and one on the last line, no line end
        handle.write(b'9002,2020-04-01,"tail,5')
    bad[f"eu_node_payments.csv:{len(eu_payments.read_bytes().splitlines())}"] = "unterminated quote"
    _insert(folder / "ap_node_payments.csv", {5: b'9003,2020-03-01,ab"cd,10\n'})
    bad["ap_node_payments.csv:5"] = "stray quote"
    _insert(folder / "bucket_data" / "eu_bbr.csv", {100: b"9004,2021-02-13 03:00:00,1,0,5,f95d\x00e6\n"})
    bad["bucket_data/eu_bbr.csv:100"] = "NUL byte"
    _insert(folder / "bucket_data" / "us_bst.csv", {50: b"9005,2021-03-21 13:30:00,0,1,c6cd,extra\n"})
    bad["bucket_data/us_bst.csv:50"] = "wrong column count 6 (want 5)"
    _insert(folder / "ap_users_a.csv", {10: b"9006,u\xff\xfe6,eh6,pw6,2021-01-01\n"})
    bad["ap_users_a.csv:10"] = "not UTF-8"
    big = b"p" * OVERSIZED
    _insert(folder / "eu_projects.csv", {20: b"9007,2021-01-01 00:00:00," + big + b",u7,1,1\n"})
    bad["eu_projects.csv:20"] = f"oversized value in column project_id ({OVERSIZED} chars)"
    return bad


def _dead_letters(pipeline) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=pipeline.broker, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    consumer.assign([TopicPartition("storj.dlq", p) for p in range(pipeline.partitions)])
    letters = [orjson.loads(m.value) for m in consumer]
    consumer.close()
    return letters


def test_each_malformed_line_costs_itself_alone_on_both_sides(pipeline, tmp_path):
    folder = tmp_path / "dump"
    generated = generate_storj(folder, seed=21, scale=0.03)
    email_hash = _quote_a_wallet(folder)
    expected = _corrupt(folder)
    records = sum(generated["rows"].values()) + len(expected)  # the quoted wallet stays one record

    # The batch side drops exactly these lines and reads every other record.
    _, stats = read_tables(folder)
    assert sum(stats["bad"].values()) == len(expected)
    assert sum(stats["rows"].values()) == records

    pipeline.wait_ready()
    summary = pipeline.replay("storj", str(folder))
    assert summary.bad_rows == len(expected)
    assert summary.rows_read == records
    assert {b["origin"]: b["reason"] for b in summary.bad_examples} == expected

    letters = _dead_letters(pipeline)
    assert sorted(letter["origin"] for letter in letters) == sorted(expected)  # one letter per line
    status = pipeline.redis().hgetall(f"{pipeline.prefix}status:storj")
    assert int(status[b"dead_letters"]) == int(status[b"dead_letters:replay"]) == len(expected)  # counted too
    assert {letter["origin"]: letter["reason"] for letter in letters} == expected
    originals = {letter["origin"]: letter["original"] for letter in letters}
    assert originals["eu_node_payments.csv:60"] == '9001,2020-03-01,"unterminated,1000'
    assert len(originals["eu_projects.csv:20"]) > OVERSIZED

    mismatches, counts = pipeline.verify("storj", str(folder))
    assert counts["operator"] > 5
    assert [str(m) for m in mismatches] == []
    assert WALLET in pipeline.features("storj", "operator")[email_hash]["wallets"]
