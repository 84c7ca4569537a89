"""``geoseg app``: options, the install hint without gradio, and the warning when exposed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from geoseg.cli import cli


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record the config `geoseg app` would serve instead of serving it."""
    pytest.importorskip("gradio", reason="the web app needs the `app` extra (gradio)")
    import geoseg.app.ui as ui

    calls: list[Any] = []
    monkeypatch.setattr(
        ui, "launch_app", lambda config: (ui.warn_if_exposed(config), calls.append(config))
    )
    return calls


def test_defaults_bind_loopback(launched: list[Any]) -> None:
    result = CliRunner().invoke(cli, ["app"])
    assert result.exit_code == 0, result.output
    config = launched[0]
    assert (config.host, config.port, config.max_size_mb, config.concurrency, config.auth) == (
        "127.0.0.1",
        7860,
        200.0,
        1,
        (),
    )
    assert (config.max_pixels, config.allow_urls, config.allow_private_urls) == (
        100_000_000,
        True,
        False,
    )
    assert "Warning" not in result.output


def test_options_reach_the_config(launched: list[Any], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "app",
            "--models",
            str(tmp_path),
            "--max-size-mb",
            "5",
            "--concurrency",
            "2",
            "--auth",
            "alice:secret",
            "--host",
            "0.0.0.0",
            "--no-urls",
            "--keep-minutes",
            "1",
            "--max-megapixels",
            "2.5",
            "--allow-private-urls",
        ],
    )
    assert result.exit_code == 0, result.output
    config = launched[0]
    assert (
        config.models_dir == tmp_path.resolve()
        and config.max_bytes == 5_000_000
        and config.concurrency == 2
    )
    assert (
        config.auth == (("alice", "secret"),) and not config.allow_urls and config.keep_minutes == 1
    )
    assert config.max_pixels == 2_500_000 and config.allow_private_urls
    assert "Warning" not in result.output  # exposed, but with a login


def test_exposed_without_auth_warns(launched: list[Any]) -> None:
    result = CliRunner().invoke(cli, ["app", "--host", "0.0.0.0"])
    assert result.exit_code == 0
    assert (
        "Warning: the app listens on 0.0.0.0:7860, reachable from other machines, and nobody has "
        "to log in" in result.output
    )


def test_bad_options_are_one_line_errors(launched: list[Any], tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["app", "--auth", "alice"])
    assert r.exit_code == 2 and "expected USER:PASSWORD" in r.output
    r = CliRunner().invoke(cli, ["app", "--max-megapixels", "0"])
    assert r.exit_code == 2 and "--max-megapixels" in r.output
    r = CliRunner().invoke(cli, ["app", "--models", str(tmp_path / "none")])
    assert (
        r.exit_code == 1
        and "expected a folder of .safetensors checkpoints, found no such folder" in r.output
    )
    assert "Traceback" not in r.output


def test_missing_gradio_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_gradio(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    r = CliRunner().invoke(cli, ["app"])
    assert r.exit_code == 1 and "pip install 'geoseg[app]'" in r.output
