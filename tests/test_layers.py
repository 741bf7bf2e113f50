"""No import runs back up: the engine never imports the command line, the server or the benchmarks, and
knows the datasets only through their registry."""
from __future__ import annotations

import ast
from pathlib import Path

import datasets

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ("common", "contract", "replay", "stream", "verify")  # what a deployment's worker and replay run
ABOVE = ("fsp", "bench", "serving", "tests")  # what uses the engine
REGISTRY = "datasets"  # datasets/__init__.py: the one module of datasets/ the engine may import


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, relative imports made absolute (`from . import logic` in
    datasets/ucn/report.py imports datasets.ucn and datasets.ucn.logic)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            found.add(module)
            if node.level:  # `from . import logic`: maybe a module
                found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _modules(*packages: str):
    for package in packages:
        yield from (ROOT / package).rglob("*.py")


def test_the_engine_imports_nothing_above_it():
    upward = {}
    for package in ENGINE:
        for path in (ROOT / package).rglob("*.py"):
            bad = sorted(m for m in _imports(path) if m.split(".")[0] in ABOVE)
            if bad:
                upward[str(path.relative_to(ROOT))] = bad
    assert upward == {}


def test_a_dataset_imports_nothing_above_the_engine():
    """A dataset's stages, logic and figures build on the engine (stream.report draws the page), never on
    the command line, the server or the benchmarks."""
    upward = {}
    for path in _modules("datasets"):
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


def test_the_engine_imports_of_the_datasets_only_their_registry():
    """A dataset's code is reached through `datasets.get(name)`, never imported by name: adding a dataset
    is its folder and a line in the registry."""
    named = {}
    for path in _modules(*ENGINE, "serving", "fsp"):
        bad = sorted(m for m in _imports(path) if m.split(".")[0] == REGISTRY and m != REGISTRY)
        if bad:
            named[str(path.relative_to(ROOT))] = bad
    assert named == {}


def test_the_engine_never_compares_with_a_dataset_s_name():
    """No `dataset == "storj"`, no `if dataset in ("ucn", ...)`, no dict keyed by dataset names: what differs
    between datasets is in their descriptions (contract.dataset.Dataset). Help texts may name them."""
    names = set(datasets.names())
    branches = []
    for path in _modules(*ENGINE, "serving", "fsp"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                values = [n for o in operands for n in ([o, *o.elts] if isinstance(o, (ast.Tuple, ast.List, ast.Set))
                                                           else [o])]
            elif isinstance(node, ast.Dict):
                values = [key for key in node.keys if key is not None]
            else:
                continue
            if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                branches.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert branches == []


def test_a_dataset_s_batch_computation_is_independent_of_the_stream():
    """verify compares the stream with each dataset's batch computation (datasets/*/batch.py): written
    apart, it imports no stream code, not its dataset's logic or stages, and not the contract's rows."""
    dependent = {}
    for path in (ROOT / "datasets").glob("*/batch.py"):
        own = f"datasets.{path.parent.name}"
        bad = sorted(m for m in _imports(path)
                     if m.split(".")[0] in ("stream", "contract", "replay")
                     or m in (own, f"{own}.logic", f"{own}.stages", f"{own}.tables"))
        if bad:
            dependent[str(path.relative_to(ROOT))] = bad
    assert len(list((ROOT / "datasets").glob("*/batch.py"))) >= 2 and dependent == {}


def test_stages_reach_the_runtime_only_through_their_context():
    """A dataset's stages import no worker module (Runtime, producer, relay, consumer) and use no attribute
    of a stage's context that StageContext does not declare."""
    from stream.runtime.context import StageContext

    allowed = set(StageContext.__slots__) | {name for name in dir(StageContext) if not name.startswith("_")}
    wrong = {}
    for path in ROOT.glob("datasets/*/stages.py"):
        tree = ast.parse(path.read_text())
        imported = _imports(path)
        used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute) and node.value.attr == "context"}
        used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                 and isinstance(node.value, ast.Name) and node.value.id == "context"}
        bad = sorted(used - allowed) + sorted(m for m in imported if m.startswith(
            ("stream.runtime.worker", "stream.runtime.relay", "stream.runtime.consumer", "faust", "aiokafka")))
        if bad or not used:
            wrong[path.relative_to(ROOT).as_posix()] = bad or ["no use of the context at all"]
    assert not wrong, wrong
