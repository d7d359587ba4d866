"""LOGSTREAM_LOG_FORMAT=json: one JSON object a line, with the process context and the
runtime's structured fields."""

from __future__ import annotations

import io
import json
import logging
import logging.config

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
