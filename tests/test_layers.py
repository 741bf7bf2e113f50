"""No import runs back up: the engine never imports the command line, the server or the benchmarks."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ("common", "contract", "replay", "stream", "verify")  # what a deployment's worker and replay run
ABOVE = ("fsp", "bench", "serving", "tests")  # what uses the engine


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_the_engine_imports_nothing_above_it():
    upward = {}
    for package in ENGINE:
        for path in (ROOT / package).rglob("*.py"):
            bad = sorted(m for m in _imports(path) if m.split(".")[0] in ABOVE)
            if bad:
                upward[str(path.relative_to(ROOT))] = bad
    assert upward == {}


def test_the_pure_logic_imports_no_kafka_faust_or_redis():
    runtime = {"faust", "aiokafka", "kafka", "confluent_kafka", "redis", "mode"}
    impure = {}
    for path in (ROOT / "stream" / "logic").rglob("*.py"):
        bad = sorted(m for m in _imports(path) if m.split(".")[0] in runtime)
        if bad:
            impure[path.name] = bad
    assert impure == {}


def test_the_command_line_module_is_not_imported_by_the_jobs_it_runs():
    for path in [*(ROOT / "fsp").glob("*.py"), *(ROOT / "bench").glob("*.py")]:
        if path.name not in ("cli.py", "__main__.py"):
            assert "fsp.cli" not in _imports(path), path.name
