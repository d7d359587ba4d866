"""Printing for the CLI: results to stdout, one-line reasons to stderr."""

from __future__ import annotations

import sys

import typer

__all__ = ["fail", "say"]


def say(message: str) -> None:
    typer.echo(message)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: <message>` on stderr and return the Exit to raise."""
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)
