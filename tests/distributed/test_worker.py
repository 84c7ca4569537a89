"""What a worker process is given: the allocator settings that keep tiles' memory reused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from geoseg.distributed.cluster import open_client

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's allocator settings: Linux only"
)

# Allocates and frees 4 MiB twenty times, as a tile's activations are, and prints the page faults
# the last ten cost. With glibc's thresholds fixed at Dask's MALLOC_TRIM_THRESHOLD_, every round
# is a fresh mmap whose pages fault in again (hundreds a round); reused heap memory costs none.
FAULTS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from geoseg.distributed.worker import tensor_friendly_malloc
    tuned = tensor_friendly_malloc() if sys.argv[1] == "tuned" else False
    for i in range(20):
        if i == 10:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = np.ones(1 << 22, dtype=np.uint8)
        del a
    print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def faults(mode: str, trim: bool) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    if trim:
        env["MALLOC_TRIM_THRESHOLD_"] = "65536"  # what a Dask nanny gives its workers
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


def test_a_dask_workers_allocator_reuses_tile_memory_once_tuned() -> None:
    tuned, after = faults("tuned", trim=True)
    assert tuned == "True"
    _, untuned = faults("plain", trim=True)
    assert untuned >= 10 * 256  # the slow case is real here: each round faults its pages in
    assert after < 10 * 16


def test_a_process_without_dasks_setting_is_left_alone() -> None:
    tuned, count = faults("tuned", trim=False)
    assert tuned == "False"
    assert count < 10 * 16  # glibc's adaptive thresholds already reuse the memory


def test_local_cluster_workers_are_tuned_before_their_first_task() -> None:
    def state() -> tuple[bool, bool]:
        from geoseg.distributed import worker

        return "MALLOC_TRIM_THRESHOLD_" in os.environ, worker._tuned

    with open_client("local:1") as (client, spec):
        client.wait_for_workers(1)
        assert list(client.run(state).values()) == [(True, True)]
        # the same cluster handed back as a Client splits the cores the same way
        with open_client(client) as (_, again):
            assert again.local and (again.workers, again.threads) == (1, spec.threads)
