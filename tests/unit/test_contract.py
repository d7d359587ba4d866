"""The machine-readable contract: the same facts as the `.avsc` files and the README, and an
AsyncAPI document that the official AsyncAPI 3.0.0 JSON Schema accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from logstream.cli.main import app
from logstream.contract import asyncapi_document, schemas_document
from logstream.schemas import SchemaCatalogue

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO / "avro_schemas"
ASYNCAPI_SCHEMA = REPO / "tests" / "contract" / "asyncapi-3.0.0.schema.json"
TOPICS = {"like": "staging.likes"}


@pytest.fixture(scope="module")
def catalogue() -> SchemaCatalogue:
    return SchemaCatalogue.load(SCHEMA_DIR)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def asyncapi(catalogue: SchemaCatalogue) -> dict[str, Any]:
    return asyncapi_document(catalogue, TOPICS, bootstrap_servers="k1:9092,k2:9092")


def _files() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(SCHEMA_DIR.glob("*.avsc"))}


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref}: no {part!r}"
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for key, v in node.items() if key != "schema" for r in _refs(v)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


# ----- /v1/schemas ------------------------------------------------------------------------------
def test_schemas_document_lists_every_version_as_in_the_files(catalogue) -> None:
    doc = schemas_document(catalogue, TOPICS)
    (like,) = doc["event_types"]
    assert like["event_type"] == "like" and like["record"] == "logstream.events.Like"
    assert (like["topic"], like["dlq_topic"]) == ("staging.likes", "staging.likes.dlq")
    assert (like["key_field"], like["timestamp_field"]) == ("url", "occurred_at")
    assert like["latest_version"] == 2
    files = _files()
    assert [v["file"] for v in like["versions"]] == ["like.v1.avsc", "like.v2.avsc"]
    for version in like["versions"]:
        assert version["avsc"] == files[version["file"]]
        assert version["header"] == "c301" + version["fingerprint"]
    # The fingerprints the README prints.
    assert [v["fingerprint"] for v in like["versions"]] == ["bc48571d2db72337", "1ff30cf1db6bec5a"]
    assert doc["encoding"]["magic"] == "c301" and doc["encoding"]["header_bytes"] == 10
    assert doc["timestamp"]["event_time_zero_written_as"] == -1
    assert doc["partitioning"]["formula"] == "toPositive(murmur2(key)) % partitions"
    json.dumps(doc)  # plain JSON all the way down


# ----- AsyncAPI ---------------------------------------------------------------------------------
def test_asyncapi_document_is_valid_asyncapi_3(asyncapi, validator) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(asyncapi)]
    assert errors == []
    assert asyncapi["asyncapi"] == "3.0.0"


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        (("operations", "write_like", "action"), "publish"),  # AsyncAPI 2 wording
        (("channels", "likes", "bindings", "kafka", "partitions"), 0),
        (("components", "messages", "like.v2", "payload", "schema", "type"), 7),
    ],
)
def test_the_validator_does_reject_broken_documents(asyncapi, validator, where, bad) -> None:
    broken = json.loads(json.dumps(asyncapi))
    node = broken
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = bad
    assert list(validator.iter_errors(broken))


def test_every_ref_resolves(asyncapi) -> None:
    refs = _refs(asyncapi)
    assert len(refs) >= 10
    for ref in refs:
        _resolve(asyncapi, ref)


def test_channels_messages_and_dlq_twin(asyncapi) -> None:
    channel = asyncapi["channels"]["likes"]
    assert channel["address"] == "staging.likes"
    assert channel["bindings"]["kafka"]["topic"] == "staging.likes"
    assert channel["bindings"]["kafka"]["topicConfiguration"]["retention.ms"] == -1
    assert channel["x-logstream-key-field"] == "url"
    assert channel["x-logstream-timestamp-field"] == "occurred_at"
    assert channel["x-logstream-timestamp"]["event_time_zero_written_as"] == -1
    assert channel["x-logstream-encoding"]["magic"] == "c301"
    dlq = asyncapi["channels"][channel["x-logstream-dead-letter-channel"]]
    assert dlq["address"] == "staging.likes.dlq"
    dead = _resolve(asyncapi, next(iter(dlq["messages"].values()))["$ref"])
    assert "logstream.origin.offset" in dead["headers"]["properties"]

    files = _files()
    for name, ref in channel["messages"].items():
        message = _resolve(asyncapi, ref["$ref"])
        version = int(name.rsplit(".v", 1)[1])
        avsc = files[f"like.v{version}.avsc"]
        assert message["payload"]["schemaFormat"].startswith("application/vnd.apache.avro")
        assert message["payload"]["schema"] == avsc
        assert message["contentType"] == "avro/binary"
        assert message["x-logstream-header"] == "c301" + message["x-logstream-fingerprint"]
        assert "url" in message["bindings"]["kafka"]["key"]["description"]
    assert sorted(channel["messages"]) == ["like.v1", "like.v2"]
    # Producers write the latest version only; readers meet every version.
    assert [m["$ref"] for m in asyncapi["operations"]["write_like"]["messages"]] == [
        "#/channels/likes/messages/like.v2"
    ]
    assert len(asyncapi["operations"]["read_like"]["messages"]) == 2
    assert [s["host"] for s in asyncapi["servers"].values()] == ["k1:9092", "k2:9092"]


# ----- CLI --------------------------------------------------------------------------------------
def test_cli_prints_both_documents(monkeypatch, catalogue, validator) -> None:
    monkeypatch.setenv("LOGSTREAM_TOPIC_PREFIX", "staging.")
    runner = CliRunner()
    plain = runner.invoke(app, ["contract"])
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.output) == schemas_document(catalogue, TOPICS)
    spec = runner.invoke(app, ["contract", "--asyncapi"])
    assert spec.exit_code == 0, spec.output
    document = json.loads(spec.output)
    assert document["channels"]["likes"]["address"] == "staging.likes"
    assert list(validator.iter_errors(document)) == []


def test_cli_error_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "logstream", "contract", "--dir", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
