"""The versions a fresh clone installs are the ones main was tested with (requirements.lock)."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not a pin: {line!r}"
            pins[_canonical(name)] = version
    return pins


def _declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    return [_canonical(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in requirements]


def test_every_declared_dependency_is_pinned():
    pins = _locked()
    assert [name for name in _declared() if name not in pins] == []


def test_the_environment_running_the_tests_has_the_locked_versions():
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    differ = {name: (version, installed.get(name)) for name, version in _locked().items()
              if installed.get(name) != version}
    assert differ == {}, "installed versions differ from requirements.lock: (locked, installed)"
