"""The datasets the engine knows, one line each: a name and the module whose `DATASET` describes it.

Adding a dataset is adding its folder beside these (see docs/architecture.md) and a line below. The
engine looks datasets up here by name (`get`, `names`) and imports nothing else of this package
(tests/test_layers.py). A dataset's module is imported at its first `get`, so that reading the
names (the command line's choices) costs nothing.
"""
from __future__ import annotations

import importlib

from contract.dataset import Dataset

_KNOWN: dict[str, str | Dataset] = {
    "storj": "datasets.storj",
    "ucn": "datasets.ucn",
}
_LOADED: dict[str, Dataset] = {}


class UnknownDataset(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def names() -> tuple[str, ...]:
    """Every dataset, in the order above (then those registered since)."""
    return tuple(_KNOWN)


def get(name: str) -> Dataset:
    """The description of dataset `name`; UnknownDataset (a KeyError) when there is none."""
    try:
        return _LOADED[name]
    except KeyError:
        pass
    where = _KNOWN.get(name)
    if where is None:
        raise UnknownDataset(f"unknown dataset {name!r} (known: {', '.join(_KNOWN)})")
    dataset = where if isinstance(where, Dataset) else importlib.import_module(where).DATASET
    if dataset.name != name:
        raise ValueError(f"{where} describes dataset {dataset.name!r}, not {name!r}")
    _LOADED[name] = dataset
    return dataset


def register(dataset: Dataset) -> None:
    """Add a dataset described in code (a test's): every lookup by its name finds it from now on."""
    if dataset.name in _KNOWN:
        raise ValueError(f"dataset {dataset.name!r} is known already")
    _KNOWN[dataset.name] = _LOADED[dataset.name] = dataset


def unregister(name: str) -> None:
    """Forget a dataset `register` added."""
    if not isinstance(_KNOWN.get(name), Dataset):
        raise ValueError(f"dataset {name!r} was not registered in code")
    del _KNOWN[name]
    _LOADED.pop(name, None)
