"""The one rule for text coming in (C0 controls but TAB, LF, CR, and DEL refused, the field
named) and the one for keys reaching a store (no NUL)."""

from __future__ import annotations

from logstream.text_rules import control_character_errors, forbidden_control, unstorable_key


def test_every_c0_control_but_tab_lf_cr_and_del_is_forbidden():
    for code in range(0x80):
        text = f"a{chr(code)}b"
        forbidden = (code < 0x20 and chr(code) not in "\t\n\r") or code == 0x7F
        assert (forbidden_control(text) is not None) == forbidden, hex(code)
    assert forbidden_control("https://example.com/\x00a") == "U+0000"
    assert forbidden_control("é ü \u2028 \U0001f600") is None  # not C0: allowed


def test_errors_name_every_string_field_by_its_path():
    record = {
        "url": "https://x/\x00",
        "user_id": "ok\tfine",
        "tags": ["a", "b\x1b[31m"],
        "attrs": {"k\x7f": "v", "n": 5},
        "count": 3,
        "none": None,
    }
    fields = [name for name, _why in control_character_errors(record)]
    assert fields == ["url", "tags[1]", "attrs.k\\u007f"]  # shown escaped, never raw
    assert "U+0000" in control_character_errors(record)[0][1]


def test_an_unstorable_key_names_it():
    error = unstorable_key("w", "https://victim.example/\x00a")
    assert "contains NUL" in str(error) and "victim.example" in str(error)
