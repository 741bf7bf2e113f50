"""`python -m bench.sort DIR [--dataset storj] [--run-rows N]`: what a replay's read and sort of a CSV folder costs.

Reads the folder and takes every row in event-time order, as `replay` does before and while it publishes,
with the replay's collector settings; prints the rows, the CPU seconds and the process's peak RSS. Run it
once with the default `--run-rows` (runs spilled to disk) and once with more rows than the folder holds
(all in memory) to see what the bound on memory costs.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

from common.gc_tuning import tune_gc
from replay.external_sort import RUN_ROWS, sort_externally
from replay.sources.csv_folder import read_folder


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sort", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a CSV folder (`fsp generate`)")
    parser.add_argument("--dataset", default="storj")
    parser.add_argument("--run-rows", type=int, default=RUN_ROWS)
    args = parser.parse_args()
    tune_gc()
    started = time.process_time()
    ordered, _ = sort_externally(read_folder(args.source, args.dataset), args.run_rows)
    rows = sum(1 for _ in ordered)
    print(json.dumps({"rows": rows, "run_rows": args.run_rows, "cpu_s": round(time.process_time() - started, 2),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    main()
