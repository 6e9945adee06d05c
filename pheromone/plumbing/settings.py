"""The settings a job and a service both read: where Redis is (URL, credentials, TLS), the key prefix and the
data directory, from the same `PHEROMONE_*` environment variables.

The client reads `ConnectionSettings` when an argument is left unset; the services' `Settings`
(`pheromone.services.settings`) extends it with everything else, so both sides read one variable the same way
and refuse the same contradictions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pheromone.contracts.streams import DEFAULT_PREFIX, check_prefix

__all__ = ["ConnectionSettings", "default_data_dir"]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pheromone"


class ConnectionSettings(BaseSettings):
    """Where Redis is and how to reach it, the key prefix and the data directory."""

    # hide_input_in_errors: a rule across fields would otherwise print every input, passwords included.
    # extra="ignore": a job's environment also holds the services' PHEROMONE_* variables, which are not its own.
    model_config = SettingsConfigDict(env_prefix="PHEROMONE_", extra="ignore", hide_input_in_errors=True)

    redis_url: SecretStr | None = None
    """Redis URL (`redis://`, `rediss://`, with credentials if any). None: start the embedded server."""
    # Auth and TLS (docs/SECURITY.md); merged into the URL by `pheromone.plumbing.connection.settings_url`.
    redis_username: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """ACL user name, if not given in `redis_url` (`redis://user:pass@host`)."""
    redis_password: SecretStr | None = None
    """Password (of `redis_username`, else of the default user), if not given in `redis_url`."""
    redis_tls_ca_file: FilePath | None = None
    """PEM file of the CA(s) that signed the server's certificate; default: the system's trust store."""
    redis_tls_cert_file: FilePath | None = None
    """Client certificate (PEM) for servers that require one (`tls-auth-clients yes`)."""
    redis_tls_key_file: FilePath | None = None
    """Private key of `redis_tls_cert_file`, if that file does not hold it."""
    redis_tls_verify: bool = True
    """Verify the server's certificate and host name. Off only for testing: it allows a man in the middle."""
    redis_cluster: bool = False
    """`redis_url` names a node of a Redis Cluster (or a cluster's configuration endpoint): follow the slot of
    this deployment's keys to the node that serves it (the URL parameter `cluster=true` says the same)."""
    data_dir: Path = Field(default_factory=default_data_dir)
    prefix: str = DEFAULT_PREFIX
    """Names this deployment's keys, `{prefix}:…`; letters, digits, `_`, `.`, `-` (contracts.streams)."""

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_prefix(value)

    @field_validator("redis_url")
    @classmethod
    def _scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            url = value.get_secret_value()
            if not url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _auth_and_tls(self) -> Self:
        """Refuse combinations that cannot mean what was asked; messages name settings, never values."""
        url = self.redis_url.get_secret_value() if self.redis_url is not None else None
        tls_named = [name for name in ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file")
                     if getattr(self, name) is not None] + ([] if self.redis_tls_verify else ["redis_tls_verify"])
        auth_named = [name for name in ("redis_username", "redis_password") if getattr(self, name) is not None]
        if url is None and self.redis_cluster:
            raise ValueError("redis_cluster set without redis_url: the embedded server is a single node; set "
                             "redis_url to a node of the cluster")
        if url is None and (tls_named or auth_named):
            raise ValueError(f"{', '.join(auth_named + tls_named)} set without redis_url: the embedded server "
                             "runs on loopback without auth or TLS; set redis_url too")
        if url is None:
            return self
        if tls_named and not url.startswith("rediss://"):
            raise ValueError(f"{', '.join(tls_named)} need(s) a rediss:// redis_url (TLS)")
        if self.redis_tls_key_file is not None and self.redis_tls_cert_file is None:
            raise ValueError("redis_tls_key_file needs redis_tls_cert_file (the certificate of that key)")
        if not self.redis_tls_verify and self.redis_tls_ca_file is not None:
            raise ValueError("redis_tls_verify=false contradicts redis_tls_ca_file: the CA would not be checked")
        creds = url.partition("://")[2].partition("/")[0].rpartition("@")[0]
        if self.redis_username is not None and creds.partition(":")[0]:
            raise ValueError("user name given twice: in redis_url and in redis_username; keep one")
        if self.redis_password is not None and creds.partition(":")[2]:
            raise ValueError("password given twice: in redis_url and in redis_password; keep one")
        if self.redis_username is not None and self.redis_password is None and not creds.partition(":")[2]:
            raise ValueError("redis_username needs a password (redis_password, or in redis_url)")
        return self
