"""The consumer runtime: one loop that builds any view exactly once."""

from logstream.runtime.runner import RunResult, ViewRunner

__all__ = ["RunResult", "ViewRunner"]
