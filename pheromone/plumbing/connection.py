"""Every Redis connection pheromone opens starts here: settings -> one URL -> a client, or a broker's options.

A connection is described by one URL string, the value the services, the client library and the CLI already
pass around. Credentials travel in its userinfo (`redis://user:password@host:6379/0`, percent-encoded); TLS is
the `rediss://` scheme plus redis-py's own query parameters (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`,
`ssl_cert_reqs`, `ssl_check_hostname`), so a URL written by hand means the same to redis-py as to pheromone.

- `settings_url(settings)` merges the separate settings (`redis_username`, `redis_password`, `redis_tls_*`)
  into `redis_url`; `ConnectionSettings` has already refused contradictory combinations.
- `client_options(url)` parses a URL once into the keyword arguments of redis-py's `ConnectionPool`, with one
  TLS policy (verification off also turns hostname checking off; named files must exist).
- `redis_client(url, **options)`, `blocking_connection(url, **options)` (the client's sender thread) and
  `broker_options(url)` (FastStream's `RedisBroker`, which builds the same pool) all use those options, so the
  services, the client, subscriptions and the CLI connect alike.
- A cluster URL (`cluster=true` among its query parameters, or the `redis_cluster` setting, which
  `settings_url` turns into that parameter) gets the connection classes of `pheromone.plumbing.cluster`, which
  follow this deployment's one slot to the node that serves it; everything else is unchanged.
- `redact(url)` is how a URL reaches a log or a message; `describe(exc, url)` turns a redis-py error into one
  line naming the server (never the password or the URL's userinfo) and what to change.

Errors::

    PheromoneError
    └── ConnectionSetupError   permanent: an unusable URL or TLS file, refused credentials, a failed check
"""

from __future__ import annotations

import inspect
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
import redis.connection as blocking
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    NoPermissionError,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pheromone.errors import PheromoneError
from pheromone.plumbing.cluster import (
    BlockingClusterConnection,
    BlockingClusterSSLConnection,
    ClusterConnection,
    ClusterRoute,
    ClusterSSLConnection,
    SlotMoved,
)
from pheromone.plumbing.settings import ConnectionSettings

__all__ = [
    "ConnectionSetupError",
    "blocking_connection",
    "broker_options",
    "check",
    "client_options",
    "describe",
    "redact",
    "redis_client",
    "settings_url",
]

_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_SECRET_QUERY = frozenset({"password", "ssl_password"})
_ACCEPTED = frozenset(
    name
    for cls in (Connection, SSLConnection, UnixDomainSocketConnection)
    for name in inspect.signature(cls.__init__).parameters
    if name not in {"self", "args", "kwargs"}
) | {"db", "max_connections"}
"""Query parameters a URL may carry: what redis-py's connection classes and pool accept."""


class ConnectionSetupError(PheromoneError):
    """Permanent: the URL or a TLS file is unusable, Redis refused the credentials, or the check failed."""


# -- settings -> URL -----------------------------------------------------------------------------------------


def settings_url(settings: ConnectionSettings) -> str | None:
    """`redis_url` with the separate credential and TLS settings merged in; None for the embedded server."""
    if settings.redis_url is None:
        return None
    url = settings.redis_url.get_secret_value()
    parts = urlsplit(url)
    netloc = parts.netloc
    if settings.redis_username is not None or settings.redis_password is not None:
        creds, at, host = netloc.rpartition("@")
        user_in_url, _, password_in_url = creds.partition(":") if at else ("", "", "")
        user = settings.redis_username if settings.redis_username is not None else unquote(user_in_url)
        password = (
            settings.redis_password.get_secret_value() if settings.redis_password is not None
            else unquote(password_in_url)
        )
        userinfo = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        netloc = f"{userinfo}@{host}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    merged: list[tuple[str, str]] = []  # query parameters the separate settings stand for
    for name, path in (("ssl_ca_certs", settings.redis_tls_ca_file), ("ssl_certfile", settings.redis_tls_cert_file),
                       ("ssl_keyfile", settings.redis_tls_key_file)):
        if path is not None:
            merged.append((name, str(Path(path).resolve())))
    if not settings.redis_tls_verify:
        merged += [("ssl_cert_reqs", "none"), ("ssl_check_hostname", "false")]
    if settings.redis_cluster:
        merged.append(("cluster", "true"))
    named = {k for k, _ in merged}
    query = [(k, v) for k, v in query if k not in named] + merged
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, quote_via=quote), parts.fragment))


# -- URL -> connection options -------------------------------------------------------------------------------


def client_options(url: str) -> dict[str, Any]:
    """The keyword arguments of redis-py's `ConnectionPool` for `url`; ConnectionSetupError if unusable."""
    try:
        options: dict[str, Any] = dict(parse_url(url))
    except ValueError:
        # urllib's own message quotes the unparsable part, which may be the password ("Port could not be cast
        # to integer value as 'pa'" for `redis://:pa/ss@host`): say what to fix, never what was written.
        raise ConnectionSetupError(
            f"invalid Redis URL {redact(url)}: its host, port or database cannot be read "
            "(percent-encode '/', '#', '?', '@' and ':' in a user name or password)"
        ) from None
    cluster = _flag(url, "cluster", options.pop("cluster", "false"))
    unknown = sorted(set(options) - _ACCEPTED - {"connection_class", "host", "port", "path", "username",
                                                 "password"})
    if unknown:
        raise ConnectionSetupError(f"Redis URL {redact(url)}: unknown option(s) {', '.join(unknown)}")
    tls = options.get("connection_class") is SSLConnection
    named = [name for name in (*_TLS_FILES, "ssl_cert_reqs", "ssl_check_hostname") if name in options]
    if named and not tls:
        raise ConnectionSetupError(f"Redis URL {redact(url)}: {', '.join(named)} need(s) a rediss:// URL")
    for name in _TLS_FILES:
        if name in options and not Path(options[name]).is_file():
            raise ConnectionSetupError(f"TLS file {options[name]} ({name}) does not exist or is not a file")
    if tls and str(options.get("ssl_cert_reqs", "required")).lower() == "none":
        options.setdefault("ssl_check_hostname", False)  # nothing verified: no name to check either
    if cluster:
        if options.get("connection_class") is UnixDomainSocketConnection:
            raise ConnectionSetupError(f"Redis URL {redact(url)}: cluster=true needs a host and port, not a socket")
        options["connection_class"] = ClusterSSLConnection if tls else ClusterConnection
        options["cluster_route"] = ClusterRoute((options.get("host", "localhost"), int(options.get("port", 6379))))
    return options


def _flag(url: str, name: str, value: object) -> bool:
    text = str(value).lower()
    if text in {"true", "yes", "1", "on"}:
        return True
    if text in {"false", "no", "0", "off", ""}:
        return False
    raise ConnectionSetupError(f"Redis URL {redact(url)}: {name} must be true or false")


def redis_client(url: str, **overrides: Any) -> aioredis.Redis:
    """An asyncio client for `url` (credentials and TLS included); `overrides` are pool/connection options."""
    pool = aioredis.ConnectionPool(**{**client_options(url), **overrides})
    return aioredis.Redis.from_pool(pool)


def blocking_connection(url: str, **overrides: Any) -> blocking.AbstractConnection:
    """One synchronous redis-py connection for `url`, for a thread of its own (the client's sender); not yet
    connected. Same options as `redis_client`, with redis-py's blocking connection classes."""
    options = {**client_options(url), **overrides}
    options.pop("max_connections", None)  # a pool option
    cls: type[blocking.AbstractConnection] = {
        SSLConnection: blocking.SSLConnection,
        UnixDomainSocketConnection: blocking.UnixDomainSocketConnection,
        ClusterConnection: BlockingClusterConnection,
        ClusterSSLConnection: BlockingClusterSSLConnection,
    }.get(options.pop("connection_class", Connection), blocking.Connection)
    return cls(**options)


def broker_options(url: str) -> dict[str, Any]:
    """Arguments for FastStream's `RedisBroker(**broker_options(url), ...)`.

    FastStream builds a redis-py `ConnectionPool` from its URL and keyword arguments; it gets a URL without
    credentials or query (FastStream also shows it as the AsyncAPI server address) and our parsed options as
    keywords, so the broker's connections authenticate and verify TLS exactly as `redis_client`'s do.
    """
    parts = urlsplit(url)
    bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    options = client_options(url)
    if options.get("connection_class") is UnixDomainSocketConnection:
        bare = "redis://localhost"  # FastStream parses the URL again; the connection class decides
    return {"url": bare, **options}


async def check(url: str, *, timeout: float = 5.0) -> None:
    """PING `url` once, authenticating and handshaking TLS as every client will; ConnectionSetupError if not."""
    client = redis_client(url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise ConnectionSetupError(describe(exc, url)) from None
    finally:
        await client.aclose()


# -- what may be shown ---------------------------------------------------------------------------------------


def redact(url: str) -> str:
    """`url` without its password (in the userinfo or a `password=` parameter), for logs and messages.

    Works on URLs urllib cannot parse: everything between `://` and the last `@` before the path is treated as
    credentials, so a password holding '/', '#', '?' or '@' is still hidden.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>"
    creds, at, tail = rest.rpartition("@")
    if at:
        user = creds.split(":", 1)[0] if ":" in creds else ""
        shown = f"{user}:***@" if user and "/" not in user and "#" not in user and "?" not in user else "***@"
    else:
        shown, tail = "", rest
    location, qmark, query = tail.partition("?")
    if qmark:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}=***" if k.lower() in _SECRET_QUERY else f"{k}={v}" for k, v in pairs)
    return f"{scheme}://{shown}{location}{qmark}{query}"


def _where(url: str) -> str:
    try:
        options = dict(parse_url(url))
    except ValueError:
        return redact(url)
    if "path" in options:
        return str(options["path"])
    return f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"


def describe(exc: BaseException, url: str) -> str:
    """One line for a failed connection or command: which server, what went wrong, what to change.

    Never contains the password: redis-py's own messages name host and port only, and any text that would
    quote the URL's userinfo is replaced by the redacted URL.
    """
    where = _where(url)
    if isinstance(exc, AuthenticationError | AuthenticationWrongNumberOfArgsError):
        text = str(exc).lower()
        if not _has_password(url) or "authentication required" in text or "already authenticated" in text:
            return (f"Redis at {where} requires authentication: give a user and password in the URL or set "
                    "PHEROMONE_REDIS_USERNAME / PHEROMONE_REDIS_PASSWORD")
        user = client_user(url)
        return (f"Redis at {where} refused the credentials of user {user!r} "
                "(wrong user name or password, or the user is disabled)")
    if isinstance(exc, NoPermissionError):
        user = client_user(url)
        return f"Redis at {where}: the ACL user {user!r} lacks a permission pheromone needs: {_scrub(exc, url)}"
    cause = _ssl_cause(exc)
    if cause is not None:
        return (f"TLS handshake with Redis at {where} failed: {cause} (check PHEROMONE_REDIS_TLS_CA_FILE, or the "
                "ssl_ca_certs URL parameter, names the CA that signed the server's certificate)")
    if isinstance(exc, SlotMoved):
        return str(exc)  # names the node it moved to; the URL's node is only the seed
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return f"Redis at {where} did not answer in time"
    if isinstance(exc, RedisConnectionError | OSError):
        return f"cannot reach Redis at {where}: {_scrub(exc, url)}"
    return f"Redis at {where} failed: {type(exc).__name__}: {_scrub(exc, url)}"


def client_user(url: str) -> str:
    """The ACL user a URL logs in as (`default` when it names none)."""
    try:
        return str(parse_url(url).get("username") or "default")
    except ValueError:
        return "default"


def _has_password(url: str) -> bool:
    try:
        return bool(parse_url(url).get("password"))
    except ValueError:
        return True


def _ssl_cause(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate not accepted: {seen.verify_message or seen.reason}"
        if isinstance(seen, ssl.SSLError):
            return f"{seen.reason or seen}"
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "[SSL" in text:
        return " ".join(text.split())
    return None


def _scrub(exc: BaseException, url: str) -> str:
    """The exception's message, one line, with any secret part of the URL replaced."""
    text = " ".join(str(exc).split())
    try:
        options = dict(parse_url(url))
    except ValueError:
        options = {}
    secrets = {url, unquote(url)}
    for name in ("password", "ssl_password"):
        if options.get(name):
            secrets |= {str(options[name]), quote(str(options[name]), safe="")}
    creds = url.partition("://")[2].rpartition("@")[0]
    if creds:
        secrets |= {creds, unquote(creds)}
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text
