"""One worker per data dir: the second one is refused with a message that says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from hangwatch.streams.worker import DataDirInUse, lock_data_dir


def test_a_second_worker_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    held = lock_data_dir(tmp_path / "w1")
    try:
        with pytest.raises(DataDirInUse, match="HANGWATCH_WORKER__DATA_DIR"):
            lock_data_dir(tmp_path / "w1")
        other = lock_data_dir(tmp_path / "w2")  # its own dir: fine
        other.close()
    finally:
        held.close()
    lock_data_dir(tmp_path / "w1").close()  # free again once the first worker is gone
