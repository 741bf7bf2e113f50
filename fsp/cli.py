"""`fsp`: one command line for the embedded stack, the worker, replay, publish, generate, get, verify, demo, bench."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

import datasets
from common.config import Settings, require_redis, usage_error
from common.kafka_access import check_kafka
from replay.job import check_source, print_summary, replay
from verify.job import verify


def _settings() -> Settings:
    return Settings.from_env()


def _need(value, what: str, env: str):
    if not value:
        usage_error(f"no {what}: set {env} (or run `fsp stack` and export what it prints)")
    return value


# --------------------------------------------------------------------------- commands


def cmd_stack(args) -> None:
    from fsp.stack import bring_up

    settings = _settings()
    if settings.redis_url is not None:
        require_redis(settings.redis_url)  # set: used, never silently replaced by an embedded one
    stack = bring_up(settings.kafka_broker, settings.redis_url)
    # SIGTERM (`kill`) stops the children as Ctrl-C does; blocked only now, so that they do not inherit it
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        print(f"export KAFKA_BROKER={stack.kafka_broker}")
        print(f"export REDIS_URL={stack.redis_url}", flush=True)
        print("# stack is up; Ctrl-C or SIGTERM stops it", file=sys.stderr, flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stack.stop()


def cmd_worker(args) -> None:
    from stream.runtime.worker import check_redis, run_worker

    settings = _settings()
    sys.argv = [sys.argv[0]]  # Faust's command line must not see ours
    check_redis(_need(settings.redis_url, "Redis", "REDIS_URL"))
    check_kafka(_need(settings.kafka_broker, "Kafka broker", "KAFKA_BROKER"))
    run_worker(_need(settings.kafka_broker, "Kafka broker", "KAFKA_BROKER"),
               _need(settings.redis_url, "Redis", "REDIS_URL"), settings.prefix, settings.partitions,
               tuple(args.datasets.split(",")), metrics_port=args.metrics_port,
               store_kind=args.store or settings.store, state_dir=args.state_dir or settings.state_dir,
               sessions_cap=settings.sessions_cap, feature_ttl=settings.feature_ttl)


def cmd_generate(args) -> None:
    generate = datasets.get(args.dataset).generate
    if generate is None:
        usage_error(f"{args.dataset} has no generator")
    result = generate(args.out, seed=args.seed, scale=args.scale, bad_rows=args.bad_rows)
    print(json.dumps({k: v for k, v in result.items() if k != "files"}, indent=2, default=str))


def cmd_replay(args) -> None:
    import threading

    settings = _settings()
    stop = threading.Event()
    if args.follow:
        if args.wait:
            usage_error("--wait waits for a run's end, which --follow never sends: watch for the line "
                        "'following new rows' instead, and end the run with --resume")
        if args.max_bad is not None:
            usage_error("--max-bad judges a whole source before publishing; with --follow bad rows are dead letters")
        if args.interval <= 0:
            usage_error(f"--interval must be positive, not {args.interval:g}")
        for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: flush, save the cursor, exit 0
            signal.signal(sig, lambda *_: stop.set())
    try:
        summary = replay(args.dataset, args.source, _need(settings.kafka_broker, "Kafka broker", "KAFKA_BROKER"),
                         settings.redis_url, partitions=settings.partitions, prefix=settings.prefix, pack=args.pack,
                         resume=args.resume, wait=args.wait, timeout=args.timeout, progress=not args.no_progress,
                         max_bad=args.max_bad, require_worker=True, follow=args.follow, interval=args.interval,
                         stop=stop, say=lambda line: print(line, flush=True))
    except (RuntimeError, TimeoutError) as exc:
        if not hasattr(exc, "summary"):
            raise
        print_summary(exc.summary)
        sys.exit(f"error: {exc}")
    print_summary(summary)


def cmd_publish(args) -> None:
    """JSON rows (one object or array per line) from a file or stdin to one table, as a live producer."""
    from contract import tables
    from replay.live import publish_lines
    from replay.publisher import make_producer

    try:
        tables.table(args.dataset, args.table)
    except KeyError:
        names = ", ".join(tables.topics(args.dataset))
        usage_error(f"no table {args.table!r} in {args.dataset} (topics: {names})")
    if args.file in (None, "-"):
        lines = sys.stdin
    else:
        try:
            lines = open(args.file, encoding="utf-8")
        except OSError as exc:
            usage_error(f"cannot read {args.file}: {exc.strerror}")
    broker = _need(_settings().kafka_broker, "Kafka broker", "KAFKA_BROKER")
    check_kafka(broker)
    summary = publish_lines(lines, args.dataset, args.table, make_producer(broker), key=args.key)
    print(f"published {summary.rows} rows to {summary.topic}")
    if summary.breaking:
        number, reason = summary.breaking[0]
        print(f"  {len(summary.breaking)} of them break the contract and will be dead letters "
              f"(first: line {number}: {reason})")
    for _number, reason in summary.skipped[:10]:
        print(f"  skipped {reason}")
    if summary.skipped:
        sys.exit(f"error: {len(summary.skipped)} lines were no rows and were not published")


SERVE_TOKEN_ENV = "FSP_SERVE_TOKEN"  # when set, `fsp serve` wants `Authorization: Bearer <it>` on every read


def cmd_serve(args) -> None:
    """The HTTP feature server (serving.app): stateless, so run as many replicas as needed."""
    import uvicorn

    from serving.app import create_app

    settings = _settings()
    require_redis(_need(settings.redis_url, "Redis", "REDIS_URL"))
    app = create_app(settings.redis_url, settings.prefix, os.environ.get(SERVE_TOKEN_ENV) or None,
                     settings.report_cache_s)
    print(f"serving features from {settings.redis_url} on http://{args.host}:{args.port} "
          f"(OpenAPI at /docs and /openapi.json)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


def cmd_get(args) -> None:
    from stream.client import connect, get_features, get_sessions

    settings = _settings()
    require_redis(_need(settings.redis_url, "Redis", "REDIS_URL"))
    r = connect(settings.redis_url)
    features = get_features(r, args.dataset, args.entity, args.id, settings.prefix)
    if features is None:
        sys.exit(f"no snapshot for {args.dataset}/{args.entity}/{args.id}")
    if args.sessions:
        features["sessions"] = get_sessions(r, args.dataset, args.id, settings.prefix)
    if args.json:
        print(json.dumps(features, sort_keys=True))
        return
    width = max(len(k) for k in features)
    for key in sorted(features):
        print(f"{key:<{width}}  {json.dumps(features[key])}")


def _age(seconds: float) -> str:
    """1d 02:03:04, 02:03:04 or 3.2s: an age a reader takes in at a glance."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    days, rest = divmod(int(seconds), 86400)
    clock = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


def cmd_stale(args) -> None:
    """The entities whose features last changed longest ago (contract.keys.freshness_key)."""
    import asyncio

    import redis.asyncio as aioredis

    from common.config import parse_duration
    from contract import keys
    from stream.client import stalest

    entities = datasets.get(args.dataset).snapshot_entities
    if args.entity not in entities:
        usage_error(f"no entity {args.entity!r} in {args.dataset}; known: {', '.join(entities)}")
    try:
        older_than = parse_duration(args.older_than, zero=True)
    except ValueError as exc:
        usage_error(f"--older-than: {exc}")
    if args.limit < 1:
        usage_error(f"--limit must be at least 1, not {args.limit}")
    settings = _settings()
    require_redis(_need(settings.redis_url, "Redis", "REDIS_URL"))

    async def read() -> tuple[list[dict], int]:
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            now = time.time()
            rows = await stalest(client, args.dataset, args.entity, older_than, args.limit, settings.prefix, now)
            total = await client.zcount(keys.freshness_key(settings.prefix, args.dataset, args.entity), "-inf",
                                        f"({now - older_than:.6f}")
            return rows, total
        finally:
            await client.aclose()

    rows, total = asyncio.run(read())
    if args.json:
        print(json.dumps(rows))
        return
    what = f"{args.dataset} {args.entity}s" + (
        f" whose features last changed more than {args.older_than.strip()} ago" if older_than else "")
    if not rows:
        print(f"no {what}")
        return
    width = max(len(row["id"]) for row in rows)
    print(f"{'id':<{width}}  {'updated_at':<26}  {'watermark':<26}  {'age':>12}")
    for row in rows:
        print(f"{row['id']:<{width}}  {row['updated_at'] or '-':<26}  {row['watermark'] or '-':<26}  "
              f"{_age(row['age_s']):>12}")
    print(f"{len(rows)} of {total} {what}, stalest first")


def cmd_verify(args) -> None:
    settings = _settings()
    check_source(args.dataset, args.source)
    require_redis(_need(settings.redis_url, "Redis", "REDIS_URL"))
    mismatches, counts = verify(args.dataset, args.source, _need(settings.redis_url, "Redis", "REDIS_URL"),
                                settings.prefix)
    for m in mismatches[: args.show]:
        print(m)
    print(f"verify {args.dataset}: {sum(counts.values())} entities "
          f"({', '.join(f'{n} {e}s' for e, n in counts.items())}), {len(mismatches)} mismatches")
    sys.exit(1 if mismatches else 0)


def export_target(dataset: str, entity: str) -> None:
    """One line (exit 2) for a dataset or table `fsp export` does not know."""
    from stream.feature_table import tables

    if (dataset, entity) not in tables():
        known = ", ".join(f"{d} {e}" for d, e in tables())
        usage_error(f"nothing to export as {dataset} {entity}: known are {known}")


def _ids_given(args) -> list[str] | None:
    if args.ids is not None:
        return [i.strip() for i in args.ids.split(",") if i.strip()]
    if args.ids_file is None:
        return None
    try:
        with open(args.ids_file, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    except OSError as exc:
        usage_error(f"cannot read --ids-file {args.ids_file}: {exc.strerror}")


def cmd_export(args) -> None:
    from fsp.export import export_table, format_for
    from stream.client import connect
    from stream.feature_table import SESSIONS, WrongType

    export_target(args.dataset, args.entity)
    ids = _ids_given(args)
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        usage_error(f"cannot write {args.out}: no folder {folder}")
    settings = _settings()
    require_redis(_need(settings.redis_url, "Redis", "REDIS_URL"))
    fmt = format_for(args.out, args.format)
    try:
        summary = export_table(connect(settings.redis_url), args.dataset, args.entity, args.out, fmt, settings.prefix,
                               ids, args.explode, progress=not args.no_progress)
    except WrongType as exc:
        raise SystemExit(f"error: a snapshot does not match its declared type (stream/feature_table.py): {exc}") \
            from None
    print(f"exported {summary.rows:,} {args.dataset} {args.entity} rows x {summary.columns} columns to {args.out} "
          f"({fmt}, {summary.bytes:,} bytes, {summary.seconds:.1f} s, {summary.rows_per_s:,.0f} rows/s)")
    if ids is not None and args.entity != SESSIONS and summary.rows < len(set(ids)):
        print(f"  {len(set(ids)) - summary.rows} of the {len(set(ids))} ids given have no snapshot")
    if summary.unknown_fields:
        print(f"warning: left out what has no column (a feature stream/feature_table.py does not declare, or a "
              f"map key written while the export ran): {', '.join(summary.unknown_fields[:20])}", file=sys.stderr)


def cmd_report(args) -> None:
    from stream.client import connect
    from stream.report import NoData, build_report, per_user_datasets, report_datasets

    known = report_datasets()
    if args.dataset not in known:
        usage_error(f"no report of dataset {args.dataset!r}: known are {', '.join(known)}")
    if args.user is not None and args.dataset not in per_user_datasets():
        usage_error(f"--user is for {', '.join(per_user_datasets())} reports: {args.dataset} has no per-user pictures")
    settings = _settings()
    require_redis(_need(settings.redis_url, "Redis", "REDIS_URL"))
    try:
        report = build_report(connect(settings.redis_url), args.dataset, settings.prefix, args.user)
    except NoData as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        written = report.write(args.out)
    except OSError as exc:
        raise SystemExit(f"error: cannot write the report to {args.out}: {exc.strerror}") from None
    print(f"report of {report.subtitle}: {written[0]} and {len(written) - 1} figures")


def cmd_demo(args) -> None:
    from fsp.demo import run_demo

    sys.exit(run_demo(scale=args.scale, seed=args.seed, out=args.out))


def cmd_bench(args) -> None:
    if args.growth:
        from bench.growth import print_growth, run_growth

        results = run_growth(quick=args.quick)
        print_growth(results)
        with open(args.out, "w") as handle:
            json.dump({"growth": results}, handle, indent=2)
        return
    from bench.suite import run_bench

    run_bench(args)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fsp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start the embedded broker (and Redis unless REDIS_URL is set)")
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("worker", help="run a stream worker (KAFKA_BROKER, REDIS_URL)")
    p.add_argument("--datasets", default=",".join(datasets.names()), help="comma-separated datasets to process")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    p.add_argument("--store", choices=["rocksdb", "memory"], default=None,
                   help="where keyed state lives (default: FSP_STORE, else rocksdb)")
    p.add_argument("--state-dir", default=None,
                   help="the RocksDB state of this worker (default: FSP_STATE_DIR, else .fsp/state)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("generate", help="write a synthetic dataset")
    p.add_argument("dataset", choices=datasets.names())
    p.add_argument("--out", required=True, help="folder (or for ucn also a database URL)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--bad-rows", type=int, default=0, help="inject this many malformed rows")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("replay", help="publish a CSV folder or database URL to Kafka in event-time order")
    p.add_argument("dataset", choices=datasets.names())
    p.add_argument("source", help="CSV folder or database URL (postgresql://..., sqlite:///...)")
    p.add_argument("--pack", type=int, default=20_000, help="rows per chunk of the merged order")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted replay of this source; of a source followed before (--follow), "
                        "publish what is new since its cursor and end its run (the end mark closes every window)")
    p.add_argument("--wait", action="store_true", help="return once Redis reflects every published event")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits at most")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--max-bad", type=int, default=None, help="fail before publishing when bad rows exceed this")
    p.add_argument("--follow", action="store_true",
                   help="after the history, keep publishing new rows (Ctrl-C or SIGTERM stops, the cursor is saved "
                        "in .fsp/ and a restart resumes from it; --resume without --follow then publishes what is "
                        "new and ends the run). Database tables are followed by their integer id when they have "
                        "one (a row inserted late with an old event time is still found), else by event time "
                        "(rows must come in event-time order); an UPDATE of a published row publishes nothing. "
                        "CSV files: appended complete lines and new files")
    p.add_argument("--interval", type=float, default=1.0, help="with --follow: seconds between polls (default 1)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("publish", help="publish JSON rows (one object or array per line) to a table, as a live "
                                       "producer would")
    p.add_argument("dataset", choices=datasets.names())
    p.add_argument("table", help="a table of the dataset, e.g. bbr or dnsreqs")
    p.add_argument("file", nargs="?", default=None, help="the rows (default: stdin)")
    p.add_argument("--key", default=None, help="the message key of every row (default: each row's routing key)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("get", help="print an entity's feature snapshot from Redis")
    p.add_argument("dataset")
    p.add_argument("entity")
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    p.add_argument("--sessions", action="store_true", help="include the closed sessions list")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("stale", help="list the entities whose features last changed longest ago")
    p.add_argument("dataset", choices=sorted(datasets.names()))
    p.add_argument("--entity", default="user", help="the entity kind (storj: user, operator; ucn: user)")
    p.add_argument("--older-than", default="0", help="only those older than this: 90s, 15m, 1h, 30d (default: any)")
    p.add_argument("--limit", type=int, default=20, help="at most this many, stalest first")
    p.add_argument("--json", action="store_true", help="a JSON array of {id, updated_at, written_at, watermark, age_s}")
    p.set_defaults(func=cmd_stale)

    p = sub.add_parser("serve", help="serve feature snapshots over HTTP (FSP_SERVE_TOKEN: a bearer token)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("verify", help="recompute features in batch (pandas) and compare with Redis")
    p.add_argument("dataset", choices=datasets.names())
    p.add_argument("source")
    p.add_argument("--show", type=int, default=20, help="mismatches to print")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "export", help="write every snapshot of an entity kind (or ucn's sessions) as one Parquet or CSV table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write every snapshot of DATASET ENTITY in Redis (REDIS_URL, FEATURE_PREFIX) as one table, a "
                    "row per entity\n(a row per closed session for `ucn sessions`), read in pages with bounded "
                    "memory.",
        epilog="Columns are typed: whole numbers int64, dates date32, times timestamp[us] (naive UTC), maps\n"
               "map<string, ...>, lists list<...>, records (last_session, _meta) structs; in CSV nested values are "
               "JSON.\n\n"
               "--explode spreads them over columns named FEATURE-KEY:\n"
               "  upload_bytes_by_month-2021-04  the month's upload bytes (the storj notebook's uploads-2021-04;\n"
               "                                 `uploads` here is the number of upload rows, so the feature's name "
               "stays)\n"
               "  bytes_by_hour_weekday-07       07:00-08:00 local time      bytes_by_week_slot-mon-08  Monday "
               "08:00-10:00\n"
               "  inter_event_hist-0.1s          the bin from 0.1 s to 1 s   last_session-start, _meta-version\n"
               "A month (key) an entity lacks is empty: no row counted (the notebook filled 0). Lists of varying "
               "length\n(dates, months, wallets, domains) stay lists.")
    p.add_argument("dataset", help="storj or ucn")
    p.add_argument("entity", help="user or operator (storj), user or sessions (ucn)")
    p.add_argument("--out", required=True, help="the file to write (replaced at the end, never half-written)")
    p.add_argument("--format", choices=["parquet", "csv"], default=None,
                   help="default: csv for a .csv file, else parquet")
    p.add_argument("--explode", action="store_true", help="one column per map key, vector position, record field")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--ids", default=None, help="only these ids, comma-separated (ucn sessions: of these users)")
    which.add_argument("--ids-file", default=None, help="only the ids in this file, one a line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="draw the snapshots in Redis as an HTML page with PNG figures",
                       description="Write DIR/index.html and its PNG figures from the snapshots in Redis (REDIS_URL, "
                                   "FEATURE_PREFIX). `fsp serve` serves the same page at /v1/DATASET/report.")
    p.add_argument("dataset", help="storj or ucn")
    p.add_argument("--out", required=True, help="the folder to write (created when missing)")
    p.add_argument("--user", default=None, help="ucn: the report of this one user")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="everything end to end on the embedded stack")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="demo-data", help="where the sample dump is written")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="measure throughput against baselines (not a test)")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--out", default="bench-results.json")
    p.add_argument("--naive-events", type=int, default=30_000,
                   help="events through the naive Faust baseline (the raw consumer reads them all)")
    p.add_argument("--live-seconds", type=float, default=30, help="live-mode latency run length (0: skip)")
    p.add_argument("--live-rate", type=int, default=1000, help="live-mode events per second")
    p.add_argument("--skip-scaling", action="store_true", help="skip the storj run with two workers in one group")
    p.add_argument("--follow-seconds", type=float, default=10,
                   help="replay --follow latency: seconds of rows committed in PostgreSQL (PG_URL) at 100/s (0: skip)")
    p.add_argument("--serve-seconds", type=float, default=10,
                   help="fsp serve: seconds of single reads at 1,000/s, then of 100-entity reads at 100/s (0: skip)")
    p.add_argument("--growth", action="store_true",
                   help="only the growth bench: CPU per row and largest state record as 4 keys' histories grow")
    p.add_argument("--quick", action="store_true", help="with --growth: a tenth of each history")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
