"""The import rules of the layout: geoseg, geoseg.io and the CLI's help stay torch-free."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import geoseg",
        "import geoseg.io",
        "import geoseg.models.config",
        "from click.testing import CliRunner; from geoseg.cli import cli; r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output",
    ],
)
def test_no_torch_import(code: str) -> None:
    loaded = _modules_after(code)
    assert "torch" not in loaded
    assert "torchgeo" not in loaded


def test_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "geoseg", "--help"], capture_output=True, text=True, check=True)
    assert "info" in out.stdout
