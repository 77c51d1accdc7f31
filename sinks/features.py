"""What the connected ClickHouse can do, decided from its version in this one place.

The gates are deliberately conservative: each feature is switched on from a release that
certainly has it in its final form (an LTS line), never from the first release that shipped
it experimentally. A server between 18.16 and a gate simply gets the 18.16 variant, which
works everywhere. Only 18.16 (Debian) and chdb 26.x are tested; see docs/storage.md.
"""

from __future__ import annotations

import dataclasses

from hangwatch.sinks.backends.base import ServerVersion

# The oldest ClickHouse the migrations and queries are written for (Debian 12's package).
MIN_VERSION = ServerVersion(18, 16, 0)


@dataclasses.dataclass(frozen=True, slots=True)
class Features:
    # LowCardinality(String): 18.16 only behind allow_experimental_low_cardinality_type.
    low_cardinality: bool
    # Table TTL (rows expire by themselves): 18.16 has none; retention drops partitions instead.
    ttl: bool
    # With day/month partitions, TTL can drop whole parts instead of rewriting them.
    ttl_only_drop_parts: bool

    @classmethod
    def for_version(cls, v: ServerVersion) -> Features:
        return cls(
            low_cardinality=v.at_least(20, 3),
            ttl=v.at_least(20, 3),
            ttl_only_drop_parts=v.at_least(21, 8),
        )

    def lc(self, ch_type: str) -> str:
        """`LowCardinality(T)` where supported, else T (same values, same queries)."""
        return f"LowCardinality({ch_type})" if self.low_cardinality else ch_type


def check_supported(v: ServerVersion) -> None:
    if v < MIN_VERSION:
        raise RuntimeError(f"ClickHouse {v} is older than the minimum supported version {MIN_VERSION}")
