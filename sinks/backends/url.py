"""Parse the ClickHouse URL of the settings: clickhouse://user:pass@host:9000/db?secure=1."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, unquote, urlsplit

_TRUE = {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True, slots=True)
class NativeTarget:
    host: str
    port: int
    user: str
    password: str = dataclasses.field(repr=False)
    database: str | None  # from the URL path; None when the URL has none
    secure: bool
    verify: bool
    ca_certs: str | None

    def redacted(self) -> str:
        """For logs: never the password."""
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database or ''}"


def parse_url(url: str) -> NativeTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("clickhouse", "clickhouses"):
        raise ValueError(f"unsupported ClickHouse URL scheme {parts.scheme!r}: use clickhouse:// (native "
                         "protocol, add ?secure=1 for TLS) or clickhouses://")
    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(params) - {"secure", "verify", "ca_certs"}
    if unknown:
        raise ValueError(f"unknown ClickHouse URL parameters {sorted(unknown)}; known: secure, verify, ca_certs")
    secure = parts.scheme == "clickhouses" or params.get("secure", "0").lower() in _TRUE
    db = unquote(parts.path.lstrip("/")) or None
    return NativeTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (9440 if secure else 9000),
        user=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        database=db,
        secure=secure,
        verify=params.get("verify", "1").lower() in _TRUE,
        ca_certs=params.get("ca_certs"),
    )
