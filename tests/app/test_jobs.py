"""Stopping runs: the job board that the Cancel button, a closed page and shutdown go through."""

from __future__ import annotations

import threading

import pytest

from geoseg.app.jobs import JobBoard
from geoseg.errors import RunCancelledError


def _tile_loop(board: JobBoard, session: str, started: threading.Event) -> threading.Thread:
    """A run in a worker thread that checks its job after every "tile" until it is stopped."""

    def run() -> None:
        job = board.start(session)
        outcome = "done"
        try:
            tile = 0
            while True:
                tile += 1
                job.check(f"predicting: tile {tile}")
                started.set()
        except RunCancelledError:
            outcome = "cancelled"
        finally:
            board.finish(job, outcome)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_cancel_stops_only_that_sessions_run_and_waits_for_it() -> None:
    board = JobBoard()
    a_started, b_started = threading.Event(), threading.Event()
    a, b = _tile_loop(board, "a", a_started), _tile_loop(board, "b", b_started)
    assert a_started.wait(30) and b_started.wait(30)
    stopped = board.cancel("a", "the Cancel button was pressed", wait=30)
    assert [j.session for j in stopped] == ["a"] and stopped[0].stopped.is_set()
    a.join(30)
    assert [j.session for j in board.running()] == ["b"]
    finished = board.finished[-1]
    assert (finished.session, finished.outcome, finished.why) == (
        "a",
        "cancelled",
        "the Cancel button was pressed",
    )
    assert finished.step.startswith("predicting: tile ")
    assert len(board.stop_latencies) == 1 and 0 <= board.stop_latencies[0] < 2.0
    assert board.cancel("nobody", "x") == []
    assert board.close(wait=30)  # stops b too
    b.join(30)
    assert board.running() == [] and board.finished[-1].why == "the server is shutting down"


def test_a_closed_board_refuses_new_runs() -> None:
    board = JobBoard()
    assert board.close(wait=0)
    with pytest.raises(RunCancelledError, match="the server is shutting down; try again later"):
        board.start("a")


def test_check_says_why_and_keeps_the_first_reason() -> None:
    job = JobBoard().start("a")
    job.check("loading")
    job.cancel("the page was closed")
    job.cancel("the server is shutting down")
    with pytest.raises(
        RunCancelledError, match=r"^cancelled: the page was closed; nothing was kept$"
    ):
        job.check("predicting: tile 1 of 9")
    assert job.step == "predicting: tile 1 of 9" and job.cancelled
