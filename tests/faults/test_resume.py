"""train --resume: safe changes accepted, others refused before anything is touched, history
kept."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoseg.cli import cli
from tests.training.test_train import tiny

pytestmark = pytest.mark.slow


def _epochs(run: Path) -> list[int]:
    with (run / "metrics.csv").open() as f:
        return sorted({int(r["epoch"]) for r in csv.DictReader(f) if r.get("epoch")})


def test_resume_with_more_epochs_keeps_history(
    tmp_path: Path, dubai_root: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cfg = tiny(tmp_path, dubai_root, epochs=1)
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(cli, ["-q", "train", "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    assert _epochs(run) == [0]
    out, err = capfd.readouterr()
    assert "INFO" not in out + err and "GPU available" not in out + err  # -q: nothing but errors
    saved = (run / "config.yaml").read_text()
    model = (run / "model.safetensors").read_bytes()

    res = runner.invoke(cli, ["-q", "train", "--resume", "-o", str(run), "optim.lr=0.5"])
    assert (
        res.exit_code == 1
        and "cannot resume with a different config (changed: optim.lr)" in res.output
    )
    assert (run / "config.yaml").read_text() == saved and (
        run / "model.safetensors"
    ).read_bytes() == model

    res = runner.invoke(cli, ["-q", "train", "--resume", "-o", str(run)])
    assert (
        res.exit_code == 1
        and "this run is finished (1 of 1 epochs)" in res.output
        and "--epochs 2" in res.output
    )

    res = runner.invoke(cli, ["-q", "train", "--resume", "-o", str(run), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert _epochs(run) == [0, 1]  # the first epoch's rows are still there
    assert "epochs: 2" in (run / "config.yaml").read_text()
