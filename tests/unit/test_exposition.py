"""The multiprocess metrics folder is private: an unpredictable name, mode 0700 (a fixed
/tmp/logstream-metrics-<pid> could be planted or read by another user of the machine)."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from logstream.metrics.exposition import MULTIPROC_ENV, prepare_multiprocess_dir


def test_each_server_gets_a_fresh_private_folder(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(MULTIPROC_ENV, "")  # restored after the test
    first, second = prepare_multiprocess_dir(), prepare_multiprocess_dir()
    try:
        assert first != second
        assert os.environ[MULTIPROC_ENV] == str(second)
        for folder in (first, second):
            assert folder.name != f"logstream-metrics-{os.getpid()}"
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            assert folder.stat().st_uid == os.getuid()
            assert list(folder.iterdir()) == []
    finally:
        shutil.rmtree(first)
        shutil.rmtree(second)
