"""A user's own package of views, written to a folder at test time (no logstream file edited).

`write_view_package(root, name, source)` creates `root/<name>/views.py` from `source` and,
with `entry_points`, a `<name>-0.1.dist-info` whose `entry_points.txt` registers them in the
`logstream.views` group: what `pip install` of a real package would leave on sys.path.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

__all__ = ["forget_package", "write_view_package"]


def write_view_package(
    root: Path, name: str, source: str, entry_points: Mapping[str, str] | None = None
) -> Path:
    """Write the package under `root` (put `root` on sys.path to import it)."""
    package = root / name
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "views.py").write_text(textwrap.dedent(source))
    if entry_points:
        dist = root / f"{name}-0.1.dist-info"
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
        (dist / "entry_points.txt").write_text(f"[logstream.views]\n{lines}")
    return package


def forget_package(name: str) -> None:
    """Drop the package's modules from sys.modules (a later test may rewrite it)."""
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]
