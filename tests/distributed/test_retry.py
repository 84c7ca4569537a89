"""A worker killed mid-run: its tasks run again elsewhere and the outputs are still identical."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.distributed import predict_many
from geoseg.distributed.cluster import open_client
from geoseg.inference import PredictOptions, predict_raster
from geoseg.models.checkpoint import LoadedModel
from tests.conftest import write_raster
from tests.distributed.conftest import read, textured

OPTS = PredictOptions(device="cpu", precision="fp32", workers=1)


@pytest.mark.slow
def test_killed_worker_tasks_are_retried_and_outputs_identical(
    tmp_path: Path, tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sources = [write_raster(folder / f"s{i}.tif", textured(256, 256, seed=i)) for i in range(8)]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    environ = dict(os.environ)
    killed: list[int] = []
    with open_client("local:2") as (client, _):
        assert os.environ.get("OMP_NUM_THREADS") == "1"  # dask's nanny set its workers' limit here
        pids = client.run(os.getpid)

        def kill_one(done: int, total: int) -> None:
            if done == 1 and not killed:  # the first raster is back: kill a worker mid-run
                pid = next(iter(pids.values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        result = predict_many(
            [str(folder)], tmp_path / "out", tiny_model, OPTS, scheduler=client, progress=kill_one
        )
        client.wait_for_workers(2, timeout=60)
        assert killed and killed[0] not in client.run(os.getpid).values()  # a new process
    # the limits dask wrote into this process's environment for its workers are gone: a later
    # subprocess (a CLI call, a notebook kernel) gets every core again
    assert dict(os.environ) == environ
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
