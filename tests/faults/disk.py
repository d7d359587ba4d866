"""A real full disk under the view stores: a small tmpfs mounted on `<data>/views`.

Why tmpfs: the stores then hit a genuine ENOSPC (SQLITE_FULL) from the kernel, at whatever
write needs the next page, exactly as on a full volume; no code path of the product is
patched. Mounting needs root (CAP_SYS_ADMIN), which CI has (`.ci/run` installs packages).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

FILLER = ".fault-suite-filler"


def can_mount() -> str | None:
    """None if this process may mount a tmpfs, else why not."""
    if os.geteuid() != 0:
        return "not root: mounting a tmpfs for the full-disk fault needs CAP_SYS_ADMIN"
    return None


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """Mount a `size_mb` tmpfs on `path` (created if needed) for the block; always unmounted
    (lazily, if a process of ours still holds a file there)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> int:
    """Write a file into `path` until the filesystem says ENOSPC; returns its size. Big
    chunks first, then pages, so that not even one page is left for the stores."""
    filler = path / FILLER
    written = 0
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12):
            block = b"\0" * chunk
            while True:
                try:
                    written += out.write(block) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return written


def free_space(path: Path) -> None:
    """Delete the filler: the stores can write again."""
    (path / FILLER).unlink(missing_ok=True)


def bytes_free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize
