"""The `logstream` command. Exit codes: 0 ok, 1 error (one line on stderr), 2 usage,
3 not running / not ready (status checks), 4 refused (backfill while the group is active),
5 a view's own code raised (the consumer stopped at that event: fix the view, restart).

Every error, ours or a library's, is one `error:` line with secrets masked; `--debug`
(anywhere on the command line as an argument of its own, not as another option's value:
`keys create --name --debug` names a key "--debug") prints the traceback as well, masked too.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer

from logstream.cli import (
    backfill,
    broker,
    consume,
    contract,
    ingest,
    keys,
    rebuild,
    schemas,
    stack,
    topics,
    transfer,
)
from logstream.errors import LogstreamError, ViewCodeError
from logstream.logs import configure_cli_logging
from logstream.redact import install_log_redaction, redact

__all__ = ["app", "main"]

DEBUG_FLAG = "--debug"
# Commands that talk to Kafka: refused credentials fail them in seconds (kafka/preflight.py).
KAFKA_COMMANDS = frozenset(
    {"consume", "views", "lag", "rebuild", "ingest", "backfill", "export", "import", "topics"}
)

app = typer.Typer(
    help="logstream: an event log on Apache Kafka with replayable, exactly-once views. "
    f"Add {DEBUG_FLAG} anywhere to see tracebacks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _every_command() -> None:
    configure_cli_logging()  # LOGSTREAM_LOG_FORMAT for every command, in one place


app.add_typer(broker.app, name="broker")
app.add_typer(topics.app, name="topics")
app.add_typer(schemas.app, name="schemas")
app.add_typer(stack.app, name="stack")
app.add_typer(keys.app, name="keys")
app.command()(consume.consume)
app.command()(consume.views)
app.command()(consume.lag)
app.command()(rebuild.rebuild)
app.command()(rebuild.promote)
app.command()(rebuild.drop)
app.command()(ingest.ingest)
app.command()(backfill.backfill)
app.command("export")(transfer.export_)
app.command("import")(transfer.import_)
app.command()(contract.contract)


def one_line(exc: BaseException) -> str:
    """An exception as one masked line: its message's lines joined, else its class."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if not isinstance(exc, LogstreamError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return redact(text)


def _preflight(args: list[str]) -> None:
    """Check Kafka's answer to our credentials before a command that needs Kafka runs."""
    command = next((arg for arg in args if not arg.startswith("-")), None)
    if command not in KAFKA_COMMANDS or "--help" in args:
        return
    from logstream.kafka.preflight import check_kafka_access
    from logstream.settings import load_settings

    check_kafka_access(load_settings())


def _value_options(args: list[str]) -> set[str]:
    """The option names that take a value, of the groups and the command `args` name
    (read from the command tree itself: typer carries its own click, so duck-typed)."""
    command: Any = typer.main.get_command(app)
    names: set[str] = set()

    def collect(cmd: Any) -> None:
        for param in cmd.params:
            if param.param_type_name == "option" and not param.is_flag and not param.count:
                names.update(param.opts)

    collect(command)
    for arg in args:
        if arg.startswith("-") or not hasattr(command, "get_command"):
            continue
        sub = command.get_command(None, arg)
        if sub is None:
            break
        command = sub
        collect(command)
    return names


def split_debug(args: list[str]) -> tuple[list[str], bool]:
    """`args` without the `--debug` flag, and whether it was given. A `--debug` right after
    an option that takes a value is that value, not the flag."""
    if DEBUG_FLAG not in args:
        return args, False
    takes_value = _value_options(args)
    kept: list[str] = []
    debug = False
    for i, arg in enumerate(args):
        if arg == DEBUG_FLAG and not (i > 0 and args[i - 1] in takes_value and args[i - 1] != arg):
            debug = True
            continue
        kept.append(arg)
    return kept, debug


def main() -> None:
    args, debug = split_debug(sys.argv[1:])
    sys.argv = [sys.argv[0], *args]
    install_log_redaction()
    try:
        _preflight(sys.argv[1:])
        app()
    except ViewCodeError as exc:  # its own code: the supervisor tells it from a crash
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        sys.exit(ViewCodeError.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if debug:
            print(redact(traceback.format_exc()), file=sys.stderr, end="")
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(1)
