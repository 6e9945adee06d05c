"""Fixtures for the client tests: clients that are always closed, each with its own spool directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pheromone import Pheromone
from tests.client.helpers import OpenClient


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
async def open_client(
    tmp_path: Path, prefix: str, redis_url: str, spool_dir: Path
) -> AsyncIterator[OpenClient]:
    """`await open_client(url=None, workspace="ws-t", job="job-t", **kwargs)`: an open client, closed after.

    Clients share this test's spool directory unless given `spool_dir`; close_timeout is short so a test that
    leaves Redis down does not wait the default 5 s at teardown.
    """
    opened: list[Pheromone] = []

    async def open_(
        url: str | None = None, *, workspace: str = "ws-t", job: str = "job-t", **kwargs: Any
    ) -> Pheromone:
        kwargs.setdefault("spool_dir", spool_dir)
        kwargs.setdefault("close_timeout", 0.5)
        client = Pheromone(url or redis_url, workspace=workspace, job=job, prefix=prefix, data_dir=tmp_path,
                           **kwargs)
        await client.open()
        opened.append(client)
        return client

    try:
        yield open_
    finally:
        for client in reversed(opened):
            await client.close()
