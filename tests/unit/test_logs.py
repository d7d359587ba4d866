"""LOGSTREAM_LOG_FORMAT=json: one JSON object a line, with the process context and the
runtime's structured fields."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from logstream.logs import JsonFormatter, _context, set_log_context, uvicorn_log_config


def emit(logger: logging.Logger, *args: object, **kwargs: object) -> list[dict[str, object]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    return [json.loads(line) for line in lines]


def test_one_object_per_line_with_context_and_extra_fields():
    set_log_context(view="likes-by-url@v2")
    try:
        [record] = emit(
            logging.getLogger("t.json"),
            "assigned %s\nsecond line",
            "x",
            extra={"partition": 3, "offset": 42, "unrelated": "dropped"},
        )
    finally:
        _context.clear()
    assert record["message"] == "assigned x\nsecond line"
    assert record["level"] == "INFO"
    assert record["logger"] == "t.json"
    assert (record["view"], record["partition"], record["offset"]) == ("likes-by-url@v2", 3, 42)
    assert "unrelated" not in record
    assert str(record["time"]).endswith("+00:00")


def test_exceptions_stay_inside_the_object():
    logger = logging.getLogger("t.exc")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert "ValueError: boom" in record["exception"]


def test_uvicorn_gets_json_only_when_asked():
    assert uvicorn_log_config("text") is None
    config = uvicorn_log_config("json")
    assert config is not None
    assert config["formatters"]["json"]["()"] == "logstream.logs.JsonFormatter"
    formatter = logging.config.DictConfigurator(config).configure_formatter(
        config["formatters"]["json"]
    )
    assert isinstance(formatter, JsonFormatter)


@pytest.mark.parametrize(
    "argv",
    [["contract"], ["rebuild", "no-such-view"], ["backfill", "no-such-view"], ["import", "--help"]],
    ids=lambda argv: argv[0],
)
def test_every_cli_command_logs_json_when_asked(monkeypatch: pytest.MonkeyPatch, argv: list[str]):
    """The `logstream` command sets the format once, for every subcommand (not only consume,
    ingest and the supervisor): whatever backfill, rebuild or import logs is JSON."""
    from typer.testing import CliRunner

    from logstream.cli.main import app

    monkeypatch.setenv("LOGSTREAM_LOG_FORMAT", "json")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = []
    try:
        CliRunner().invoke(app, argv)
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert root.level == logging.WARNING  # what Python shows without any set-up
        record = logging.LogRecord(
            "logstream.transfer", logging.WARNING, "f", 1, "x %s", ("y",), None
        )
        assert json.loads(handler.format(record))["message"] == "x y"
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def test_text_logging_is_left_as_python_has_it(monkeypatch: pytest.MonkeyPatch):
    from typer.testing import CliRunner

    from logstream.cli.main import app

    monkeypatch.setenv("LOGSTREAM_LOG_FORMAT", "text")
    root = logging.getLogger()
    before = root.handlers[:]
    CliRunner().invoke(app, ["contract"])
    assert root.handlers == before


def test_json_tracebacks_are_redacted_under_the_json_setting(tmp_path):
    """LOGSTREAM_LOG_FORMAT=json in a fresh process: the traceback JSON builds itself must
    not carry a store password or a registered secret (no record factory installed)."""
    import os
    import subprocess
    import sys

    script = (
        "import logging\n"
        "from logstream.logs import configure_cli_logging\n"
        "from logstream.redact import register_secrets\n"
        "configure_cli_logging()\n"
        "register_secrets(['Sasl-S3cret'])\n"
        "try:\n"
        "    raise RuntimeError('no store at postgresql://u:Pw123456@h/d (Sasl-S3cret)')\n"
        "except RuntimeError:\n"
        "    logging.getLogger('t').exception('open failed for postgresql://u:Pw123456@h/d')\n"
    )
    env = {**os.environ, "LOGSTREAM_LOG_FORMAT": "json", "LOGSTREAM_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    [line] = [x for x in done.stderr.splitlines() if x.startswith("{")]
    record = json.loads(line)
    assert "RuntimeError" in record["exception"]
    for leak in ("Pw123456", "Sasl-S3cret"):
        assert leak not in line
    assert "postgresql://u:***@h/d" in record["exception"]
    assert "postgresql://u:***@h/d" in record["message"]
