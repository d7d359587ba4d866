"""The catalogue and the compatibility check, on the real folder and on broken copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from logstream.cli.schemas import app
from logstream.errors import UnknownSchemaError
from logstream.schemas import CatalogueError, SchemaCatalogue, check_compatibility

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "avro_schemas"


def _avsc(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text())
    return data


def _folder_with(tmp_path: Path, **extra: dict[str, Any]) -> Path:
    """A copy of the real folder plus files given as name=definition (name without .avsc)."""
    folder = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, folder)
    for name, definition in extra.items():
        (folder / f"{name.replace('_', '.')}.avsc").write_text(json.dumps(definition))
    return folder


def _v3(**change: Any) -> dict[str, Any]:
    v3 = _avsc("like.v2.avsc")
    v3["logstream.version"] = 3
    v3.update(change)
    return v3


def test_real_catalogue_maps_types_topics_and_versions() -> None:
    cat = SchemaCatalogue.load(SCHEMA_DIR)
    assert cat.event_types() == ["like"]
    assert cat.topics() == ["likes"]
    assert [v.version for v in cat.versions("like")] == [1, 2]
    assert cat.latest("like").version == 2
    assert cat.latest("likes") is cat.latest("Like") is cat.latest("logstream.events.Like")
    assert cat.topic_for("like") == "likes"
    assert cat.event_type_for_topic("likes") == "like"
    for version in cat:
        assert cat.by_fingerprint(version.fingerprint) is version
        assert len(version.fingerprint) == 8
    assert len(cat) == 2


def test_unknown_names_raise_unknown_schema() -> None:
    cat = SchemaCatalogue.load(SCHEMA_DIR)
    with pytest.raises(UnknownSchemaError):
        cat.latest("dislike")
    with pytest.raises(UnknownSchemaError):
        cat.event_type_for_topic("dislikes")
    with pytest.raises(UnknownSchemaError):
        cat.by_fingerprint(b"\x00" * 8)


def test_custom_attributes_do_not_change_the_canonical_form() -> None:
    cat = SchemaCatalogue.load(SCHEMA_DIR)
    for version in cat:
        assert "logstream" not in version.canonical_form.replace("logstream.events.Like", "")
        assert '"doc"' not in version.canonical_form


def test_key_and_timestamp_fields_are_read_and_leave_fingerprints_alone() -> None:
    """The README prints these fingerprints; the key/timestamp attributes must not move them."""
    cat = SchemaCatalogue.load(SCHEMA_DIR)
    assert [v.fingerprint_hex for v in cat] == ["bc48571d2db72337", "1ff30cf1db6bec5a"]
    for version in cat:
        assert (version.key_field, version.timestamp_field) == ("url", "occurred_at")


@pytest.mark.parametrize(
    ("attribute", "value", "says"),
    [
        ("logstream.key", "colour", "'colour' is not a field"),
        ("logstream.key", "occurred_at", "must be a string"),
        ("logstream.timestamp", "url", "must be a long"),
        ("logstream.timestamp", 5, "5 is not a field"),
    ],
)
def test_key_and_timestamp_must_name_a_fitting_field(
    tmp_path: Path, attribute: str, value: object, says: str
) -> None:
    folder = _folder_with(tmp_path, like_v3=_v3(**{attribute: value}))
    with pytest.raises(CatalogueError) as info:
        SchemaCatalogue.load(folder)
    assert any("like.v3.avsc" in p and attribute in p and says in p for p in info.value.problems)


def test_key_and_timestamp_are_optional(tmp_path: Path) -> None:
    bare = _v3()
    del bare["logstream.key"], bare["logstream.timestamp"]
    bare["fields"].append({"name": "x", "type": ["null", "int"], "default": None})
    latest = SchemaCatalogue.load(_folder_with(tmp_path, like_v3=bare)).latest("like")
    assert (latest.key_field, latest.timestamp_field) == (None, None)


def test_real_folder_is_compatible() -> None:
    assert check_compatibility(SchemaCatalogue.load(SCHEMA_DIR)) == []


def test_new_field_without_default_is_named(tmp_path: Path) -> None:
    v3 = _v3()
    v3["fields"].append({"name": "score", "type": "int"})
    problems = check_compatibility(SchemaCatalogue.load(_folder_with(tmp_path, like_v3=v3)))
    assert len(problems) == 2  # v3 cannot read v1 nor v2
    for problem, writer in zip(problems, ["like.v1.avsc", "like.v2.avsc"], strict=True):
        assert "'score'" in problem
        assert "like.v3.avsc" in problem
        assert writer in problem


def test_type_change_is_named(tmp_path: Path) -> None:
    v3 = _v3()
    v3["fields"][2]["type"] = "long"  # user_id: string -> long
    problems = check_compatibility(SchemaCatalogue.load(_folder_with(tmp_path, like_v3=v3)))
    assert problems
    assert all("'user_id'" in p and "like.v3.avsc" in p for p in problems)


def test_removal_and_widening_are_compatible(tmp_path: Path) -> None:
    v3 = _v3()
    v3["fields"] = [f for f in v3["fields"] if f["name"] != "user_id"]
    v3["fields"][-1]["type"] = ["null", "string", "bytes"]
    assert check_compatibility(SchemaCatalogue.load(_folder_with(tmp_path, like_v3=v3))) == []


def test_duplicate_version_is_refused(tmp_path: Path) -> None:
    dup = _v3()
    dup["logstream.version"] = 2
    dup["fields"][0]["doc"] = "changed"
    dup["fields"].append({"name": "x", "type": ["null", "int"], "default": None})
    with pytest.raises(CatalogueError) as info:
        SchemaCatalogue.load(_folder_with(tmp_path, like_copy=dup))
    assert any("version 2" in p for p in info.value.problems)


def test_topic_change_is_refused(tmp_path: Path) -> None:
    v3 = _v3(**{"logstream.topic": "likes-v3"})
    v3["fields"].append({"name": "x", "type": ["null", "int"], "default": None})
    with pytest.raises(CatalogueError) as info:
        SchemaCatalogue.load(_folder_with(tmp_path, like_v3=v3))
    assert any("likes-v3" in p and "like.v3.avsc" in p for p in info.value.problems)


def test_same_canonical_form_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError) as info:
        SchemaCatalogue.load(_folder_with(tmp_path, like_v3=_v3()))  # only attributes differ
    assert any("same canonical form" in p for p in info.value.problems)


def test_missing_attributes_and_file_version_mismatch(tmp_path: Path) -> None:
    bare = _v3()
    del bare["logstream.topic"]
    wrong = _v3()
    wrong["fields"].append({"name": "x", "type": ["null", "int"], "default": None})
    folder = _folder_with(tmp_path, like_v3=bare, like_v4=wrong)
    with pytest.raises(CatalogueError) as info:
        SchemaCatalogue.load(folder)
    problems = " | ".join(info.value.problems)
    assert "like.v3.avsc" in problems and "logstream.topic" in problems
    assert "like.v4.avsc" in problems and "v4" in problems


def test_cli_check_and_list(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["check", "--dir", str(SCHEMA_DIR)])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == "ok: 1 event types, 2 versions"

    v3 = _v3()
    v3["fields"].append({"name": "score", "type": "int"})
    bad = runner.invoke(app, ["check", "--dir", str(_folder_with(tmp_path, like_v3=v3))])
    assert bad.exit_code == 1
    assert len(bad.stderr.strip().splitlines()) == 2
    assert "'score'" in bad.stderr

    listed = runner.invoke(app, ["list", "--dir", str(SCHEMA_DIR)])
    assert listed.exit_code == 0
    cat = SchemaCatalogue.load(SCHEMA_DIR)
    for version in cat:
        assert version.fingerprint.hex() in listed.stdout
        assert version.path.name in listed.stdout


def test_cli_check_missing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", "--dir", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "not a folder" in result.stderr
