"""SimRecord: one message as the simulator sends it, labelled with what it is, so tests can
build their oracle from exactly the valid, de-duplicated events."""

from __future__ import annotations

from typing import Final, NamedTuple

from hangwatch.schemas.call_outcome import CallOutcome

# Values of SimRecord.fault.
DUPLICATE: Final = "duplicate"  # same key and bytes as an earlier record
OUT_OF_ORDER: Final = "out_of_order"  # delivered after newer events, within the grace period
LATE: Final = "late"  # delivered after newer events by more than the grace period
MALFORMED: Final = "malformed"  # breaks the contract; error_kind says how
FAULTS: Final = (DUPLICATE, OUT_OF_ORDER, LATE, MALFORMED)


class SimRecord(NamedTuple):  # a tuple: one is built per message, four times faster than a dataclass
    key: bytes | None
    value: bytes
    # The decoded event for every record a consumer must accept (duplicates included, they
    # carry the same event); None for malformed records.
    event: CallOutcome | None
    fault: str | None = None
    # For malformed records: the ContractError kind and field that decode() must report.
    error_kind: str | None = None
    error_field: str | None = None
    # How far behind the newest event time delivered before it this record arrives (ms);
    # "late" means more than the grace period. 0 for in-order records.
    lateness_ms: int = 0

    @property
    def valid(self) -> bool:
        return self.event is not None
