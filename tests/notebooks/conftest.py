"""The selected notebooks start in the background as soon as the session knows its tests, at a
lower priority: they use the CPU time the rest of the suite leaves idle. Their tests, last, wait
for the results."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# the tests that wait for a notebook run
RUN_TESTS = ("test_runs_at_smoke_size", "test_every_figure_shows_something")
_background: list[object] = []  # the session's Background, once started


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    selected = list(
        dict.fromkeys(
            item.callspec.params["path"]
            for item in session.items
            if getattr(item, "originalname", "") in RUN_TESTS
        )
    )
    if not selected:
        return
    try:
        from tests.notebooks.background import Background
    except ImportError:  # no nbformat/nbclient: the tests skip with the reason
        return
    root = Path(tempfile.mkdtemp(prefix="geoseg-notebooks-"))
    _background.append(Background(selected, root))


def pytest_sessionfinish(session: pytest.Session) -> None:
    while _background:
        _background.pop().close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, object]]:
    if not _background:
        pytest.skip("the notebooks were not started (nbformat or nbclient missing)")
    yield _background[0].runs  # type: ignore[attr-defined]
