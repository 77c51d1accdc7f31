"""Runs a worker process: the data-directory lock, the compiled-core check, the gc policy,
then the Faust app with the runtime wired in (hangwatch.streams.faust_adapter)."""

from __future__ import annotations

import fcntl
import logging
import sys
from pathlib import Path
from typing import IO

from hangwatch.platform import gc_policy, malloc_policy, native
from hangwatch.platform.settings import Settings
from hangwatch.streams.changelogs import ensure_changelogs
from hangwatch.streams.faust_adapter import FaustWorkerHost, HangwatchWorker

log = logging.getLogger(__name__)


class DataDirInUse(RuntimeError):
    pass


def lock_data_dir(path: Path) -> IO[bytes]:
    """Hold an exclusive lock on the worker's data directory for the life of the process.

    Two workers on one data directory would open the same RocksDB files: Faust then retries
    the RocksDB lock for 30 s per partition at every rebalance and gives up."""
    path.mkdir(parents=True, exist_ok=True)
    f = open(path / "worker.lock", "wb")  # noqa: SIM115  (kept open: the lock lives with it)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise DataDirInUse(f"data directory {path} is used by another worker on this machine; give each worker "
                           "its own (--data-dir or HANGWATCH_WORKER__DATA_DIR)") from None
    return f


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    """Run one worker process until SIGTERM/SIGINT (blocking)."""
    lock = lock_data_dir(settings.worker.data_dir)  # noqa: F841  (held until the process exits)
    log.info("stream core: %s", native.verify_core().mode)  # raises on a stale compiled build
    gc_policy.configure(settings.worker.gc_young_threshold)
    malloc_policy.configure(settings.worker.malloc_arena_max, settings.worker.malloc_mmap_threshold_kb)
    ensure_changelogs(settings.kafka, settings.worker.app_id)
    host = FaustWorkerHost(settings)
    worker = HangwatchWorker(host.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # the terminal spinner redraws on every event loop tick and costs CPU
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr="127.0.0.1")
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()
