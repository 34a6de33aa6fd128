"""Built-in example problems (one per setting of THEORY.md), shipped with the package.

>>> from sambias.examples import example_names
>>> "l2-sam-depth2" in example_names()
True
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def example_names() -> list[str]:
    """Names of the built-in examples (file names without extension)."""
    return sorted(Path(e.name).stem for e in resources.files(__name__).iterdir()
                  if e.name.endswith((".toml", ".json")) and ".sweep." not in e.name)  # sweeps are no problems


def example_path(name: str) -> Path:
    """Path of the built-in example ``name``; ``KeyError`` if there is none."""
    for entry in resources.files(__name__).iterdir():
        if Path(entry.name).stem == name and entry.name.endswith((".toml", ".json")) and ".sweep." not in entry.name:
            return Path(str(entry))
    raise KeyError(name)
