"""The one settings object, read once at the entry point (CLI) and passed down as values.

Environment variables use the `PHEROMONE_` prefix (e.g. `PHEROMONE_REDIS_URL`); nested learning settings use
`PHEROMONE_LEARNING__<NAME>`. Every threshold and formula constant lives here or in `contracts.streams`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.streams import (
    BROADCAST_RETENTION_S,
    DEAD_RETENTION_S,
    DEFAULT_PREFIX,
    INGEST_RETENTION_S,
)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pheromone"


class Settings(BaseSettings):
    """Runtime settings for the services, the CLI and the demo."""

    model_config = SettingsConfigDict(env_prefix="PHEROMONE_", env_nested_delimiter="__", extra="forbid")

    redis_url: SecretStr | None = None
    """Redis URL (`redis://`, `rediss://`, with credentials if any). None: start the embedded server."""
    data_dir: Path = Field(default_factory=default_data_dir)
    db_path: Path | None = None
    """SQLite store file; default `<data_dir>/store.db`."""
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = DEFAULT_PREFIX
    consumer: str | None = None
    """Consumer name inside each group; default `<hostname>-<pid>`."""

    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 1_000
    poll_ms: Annotated[int, Field(ge=1, le=60_000)] = 100
    claim_idle_ms: Annotated[int, Field(ge=100, le=3_600_000)] = 5_000
    """A pending entry idle this long is claimed by the retrier."""
    max_deliveries: Annotated[int, Field(ge=1, le=100)] = 5
    """After this many deliveries a failing entry goes to the dead-letter stream."""
    group_check_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    trim_interval_s: Annotated[float, Field(gt=0, le=3_600)] = 30.0
    ingest_retention_s: Annotated[float, Field(gt=0)] = INGEST_RETENTION_S
    broadcast_retention_s: Annotated[float, Field(gt=0)] = BROADCAST_RETENTION_S
    dead_retention_s: Annotated[float, Field(gt=0)] = DEAD_RETENTION_S

    @field_validator("redis_url")
    @classmethod
    def _scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            url = value.get_secret_value()
            if not url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value

    @property
    def store_path(self) -> Path:
        return self.db_path or self.data_dir / "store.db"

    @property
    def consumer_name(self) -> str:
        return self.consumer or f"{os.uname().nodename}-{os.getpid()}"
