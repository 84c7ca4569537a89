"""The progress bar and summary lines commands show, and -q silencing both."""

from __future__ import annotations

import click
import pytest
import tqdm

from geoseg.cli.console import progress_bar, say


def _context(quiet: bool) -> click.Context:
    return click.Context(click.Command("run"), obj={"quiet": quiet})


def test_bar_follows_the_callback_and_shows_the_postfix(capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(quiet=False)
    with progress_bar(
        ctx, "block", postfix=lambda done, total, n: f"{n} polygons", delay=0
    ) as step:
        step(1, 4, 7)
    say(ctx, "done")
    out, err = capsys.readouterr()
    assert "1/4" in err and "7 polygons" in err and "block" in err
    assert out == "done\n"


def test_a_quick_refusal_prints_no_empty_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="bad input"):
        with progress_bar(_context(quiet=False), "tile"):
            raise ValueError("bad input")
    assert capsys.readouterr().err == ""


def test_quiet_shows_neither_bar_nor_summary(capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(quiet=True)
    with progress_bar(ctx, "image", total=2) as step:
        step(1, 2)
        step(2, 2)
    say(ctx, "done")
    assert capsys.readouterr() == ("", "")


def test_bar_is_closed_when_the_run_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[tqdm.tqdm] = []

    class Recording(tqdm.tqdm):
        def close(self) -> None:
            closed.append(self)
            super().close()

    monkeypatch.setattr(tqdm, "tqdm", Recording)
    with pytest.raises(RuntimeError, match="disk full"):
        with progress_bar(_context(quiet=False), "tile") as step:
            step(1, 3)
            raise RuntimeError("disk full")
    assert len(closed) == 1 and closed[0].n == 1 and closed[0].total == 3


def test_a_closed_stdout_stops_quietly() -> None:
    """``geoseg info scene.tif | head -1``: the reader goes away, geoseg stops without an error
    line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    scene = Path(__file__).parents[2] / "sample_data" / "rotterdam_ps_rgb.tif"

    read, write = os.pipe()
    os.close(read)  # every write to the pipe now fails with EPIPE
    try:
        run = subprocess.run(
            [sys.executable, "-m", "geoseg", "info", str(scene)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert run.returncode == 141 and "Error" not in run.stderr, run.stderr
