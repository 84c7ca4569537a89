"""A worker killed mid-run: its tasks run again elsewhere and the outputs are still identical."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.distributed import predict_many
from geoseg.inference import PredictOptions, predict_raster
from geoseg.models.checkpoint import LoadedModel
from tests.conftest import write_raster
from tests.distributed.conftest import distributed, read, textured

OPTS = PredictOptions(device="cpu", precision="fp32", workers=1)


@pytest.mark.slow
def test_killed_worker_tasks_are_retried_and_outputs_identical(
    tmp_path: Path, tiny_model: LoadedModel
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sources = [write_raster(folder / f"s{i}.tif", textured(256, 256, seed=i)) for i in range(8)]
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        death_timeout="30s",
    )
    killed: list[int] = []
    try:
        with distributed.Client(cluster) as client:
            pids = client.run(os.getpid)

            def kill_one(done: int, total: int) -> None:
                if (
                    done == 1 and not killed
                ):  # the first raster is back: kill a worker in the middle of the rest
                    pid = next(iter(pids.values()))
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

            result = predict_many(
                [str(folder)],
                tmp_path / "out",
                tiny_model,
                OPTS,
                scheduler=client,
                progress=kill_one,
            )
            client.wait_for_workers(2, timeout=60)
            assert (
                killed and killed[0] not in client.run(os.getpid).values()
            )  # the nanny started a new process
    finally:
        cluster.close()
    assert result.predicted == len(sources)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: convolutions split their sums by thread
    try:
        for src, done in zip(sources, result.done, strict=True):
            predict_raster(src, tmp_path / f"ref_{src.name}", tiny_model, OPTS)
            np.testing.assert_array_equal(
                read(done.outputs.mask), read(tmp_path / f"ref_{src.name}")
            )
    finally:
        torch.set_num_threads(threads)
