"""Which Dask cluster runs the work: ``local[:N]`` (a LocalCluster here) or ``tcp://host:port``.

Dask is an optional extra (``pip install 'geoseg[distributed]'``); it is imported only here, when
a scheduler is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from geoseg.errors import SchedulerError

__all__ = ["Scheduler", "environment_kept", "open_client", "parse_scheduler", "total_threads"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = "20s"


@dataclass(frozen=True)
class Scheduler:
    """A parsed ``--scheduler`` value.

    Attributes:
        address: ``tcp://host:port`` of an existing scheduler, or None for a local cluster.
        workers: worker processes of a local cluster.
        threads: threads per local worker (torch and the read-ahead use this many).
    """

    address: str | None = None
    workers: int = 1
    threads: int = 1

    @property
    def local(self) -> bool:
        return self.address is None


def parse_scheduler(text: str) -> Scheduler:
    """``local`` (one worker per core), ``local:N`` (N worker processes sharing the cores), or
    the address of a running scheduler (``tcp://``, ``tls://``, ``ucx://``).

    Raises:
        SchedulerError: anything else, with the accepted forms.
    """
    value = text.strip()
    cores = os.cpu_count() or 1
    if value == "local" or value.startswith("local:"):
        count = value.partition(":")[2] or str(cores)
        if not count.isdigit() or int(count) < 1:
            raise SchedulerError(
                f"--scheduler {text!r}: expected local, local:N with N >= 1 workers, or "
                "tcp://host:port"
            )
        n = int(count)
        return Scheduler(None, n, max(1, cores // n))
    if "://" in value and value.split("://", 1)[1]:
        return Scheduler(value)
    raise SchedulerError(
        f"--scheduler {text!r}: expected local, local:N (N worker processes here), "
        "or the address of a running scheduler such as tcp://10.0.0.5:8786"
    )


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise SchedulerError(
            "--scheduler needs Dask; install it with pip install 'geoseg[distributed]'"
        ) from None
    return distributed


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Only critical records from logger ``name`` and its children for the duration."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _configure(client: Any) -> None:
    """Send the object-store settings (and the allocator settings) to every worker, present and
    future."""
    from geoseg.distributed.worker import EnvironmentPlugin
    from geoseg.io.storage import gdal_options

    client.register_plugin(EnvironmentPlugin(gdal_options()))


def total_threads(client: Any) -> int:
    """Threads across the cluster's workers (at least 1)."""
    return _threads(client.scheduler_info().get("workers", {}))


def _threads(workers: dict[str, Any]) -> int:
    return max(1, sum(w.get("nthreads", 1) for w in workers.values()))


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """Give this process its environment back when the block ends.

    Dask's nanny writes its workers' limits (``distributed.nanny.pre-spawn-environ``:
    ``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``, ...) into the environment of the process that
    spawns them, and leaves them there, so every later subprocess of that process (a CLI call, a
    notebook kernel, a worker pool) would run single-threaded. The workers keep their limits.
    """
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        for key, value in before.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextlib.contextmanager
def _local_cluster(distributed: Any, spec: Scheduler) -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=spec.workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    try:
        _configure(client)
        log.info("local Dask cluster: %d worker(s), %d thread(s) each", spec.workers, spec.threads)
        yield client
    finally:
        with _quiet("distributed"):  # closing logs connection tracebacks and slow-exit warnings
            client.close()
            cluster.close()


def _spec_of(distributed: Any, client: Any) -> Scheduler:
    """What a Client you hold is connected to. A local cluster of worker processes shares this
    machine's cores: each task gets ``cores // (threads of all workers)`` torch threads, as the
    local clusters opened here do (its workers are given one by Dask's ``OMP_NUM_THREADS=1``)."""
    cluster = getattr(client, "cluster", None)
    if isinstance(cluster, distributed.LocalCluster) and cluster.processes:
        workers = client.scheduler_info().get("workers", {})  # asked once: one answer
        return Scheduler(None, len(workers), max(1, (os.cpu_count() or 1) // _threads(workers)))
    return Scheduler(getattr(client.scheduler, "address", None), 0, 0)


@contextlib.contextmanager
def open_client(scheduler: str | Scheduler | Any) -> Iterator[tuple[Any, Scheduler]]:
    """A connected ``distributed.Client`` for ``scheduler`` (a string, a :class:`Scheduler`, or a
    Client you already hold, which is used as it is and left open).

    A local cluster has one thread per worker process (threads split the cores), no dashboard,
    and closes on exit.

    Raises:
        SchedulerError: Dask missing, or the scheduler cannot be reached.
    """
    distributed = _import_distributed()
    if isinstance(scheduler, distributed.Client):
        _configure(scheduler)
        yield scheduler, _spec_of(distributed, scheduler)
        return
    spec = scheduler if isinstance(scheduler, Scheduler) else parse_scheduler(str(scheduler))
    if spec.local:
        with environment_kept(), _local_cluster(distributed, spec) as client:
            yield client, spec
        return
    try:
        client = distributed.Client(spec.address, timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise SchedulerError(
            f"--scheduler {spec.address}: cannot connect ({exc}); start one with `dask scheduler` "
            "and `dask worker ADDRESS`, or use --scheduler local:N"
        ) from None
    try:
        _configure(client)
        yield client, spec
    finally:
        client.close()
