"""Deferred optional imports: a library's start-up import of an unused module costs nothing, and
the module still works, through the library and through a later ``import``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_a_deferred_module_loads_on_first_use_only(tmp_path: Path) -> None:
    (tmp_path / "costly.py").write_text("import sys\nsys.stderr.write('loaded')\nVALUE = 42\n")
    (tmp_path / "library.py").write_text("try:\n    import costly\nexcept ImportError:\n    pass\n")
    out = _run(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from geoseg._lazy import imports_deferred
        import importlib.util
        with imports_deferred("costly", "not_installed_at_all"):
            import library
            assert importlib.util.find_spec("costly").name == "costly"  # as other libraries ask
        print("costly" in sys.modules, "not_installed_at_all" in sys.modules)
        print(library.costly.VALUE, "costly" in sys.modules)
        import costly
        print(costly.VALUE, type(costly).__name__)
        """
    )
    assert out.split() == ["False", "False", "42", "True", "42", "module"]


def test_building_a_network_does_not_import_wandb() -> None:
    pytest.importorskip("wandb", reason="only matters where W&B is installed")
    out = _run(
        """
        import sys
        from geoseg.models import build_model
        build_model("unet", "tu-mobilenetv3_small_100", classes=2)
        print("wandb" in sys.modules)
        import timm.utils.summary
        import wandb
        print(timm.utils.summary.wandb.log is wandb.log, hasattr(wandb, "init"))
        """
    )
    assert out.split() == ["False", "True", "True"]
