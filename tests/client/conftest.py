"""Fixtures for the client tests: clients that are always closed, each with its own spool directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def client_options(tmp_path: Path, prefix: str, spool_dir: Path) -> dict[str, Any]:
    """Clients share this test's spool directory unless given `spool_dir`; close_timeout is short so a test
    that leaves Redis down does not wait the default 5 s at teardown."""
    return {"workspace": "ws-t", "prefix": prefix, "data_dir": tmp_path, "spool_dir": spool_dir,
            "close_timeout": 0.5}