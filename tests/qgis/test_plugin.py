"""The QGIS plugin as shipped: its files, what it records, how it installs; no QGIS needed."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoseg import __version__
from geoseg.cli import cli
from geoseg.errors import OutputExistsError
from geoseg.qgis import PLUGIN_NAME, build_zip, choices, install_plugin

SOURCE = Path(__file__).resolve().parents[2] / "geoseg" / "qgis" / PLUGIN_NAME


def test_zip_holds_one_plugin_folder_that_records_this_geoseg(tmp_path: Path) -> None:
    path = build_zip(tmp_path / "geoseg.zip")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        record = json.loads(z.read(f"{PLUGIN_NAME}/geoseg.json"))
        metadata = z.read(f"{PLUGIN_NAME}/metadata.txt").decode()
    assert names == {
        f"{PLUGIN_NAME}/{n}"
        for n in (
            "__init__.py",
            "algorithms.py",
            "provider.py",
            "runner.py",
            "metadata.txt",
            "geoseg.json",
        )
    }
    assert record["command"] == [sys.executable, "-m", "geoseg"]
    assert record["choices"] == choices()
    assert record["choices"]["models"] == ["quality", "fast"]
    assert record["choices"]["tta"] == ["none", "flip", "d4"]
    assert "hasProcessingProvider=yes" in metadata and "qgisMinimumVersion=3.22" in metadata
    assert f"\nversion={__version__}\n" in metadata
    with pytest.raises(OutputExistsError, match="--overwrite"):
        build_zip(path)


def test_plugin_code_imports_nothing_but_qgis_and_the_standard_library() -> None:
    """QGIS's Python has no torch and no geoseg: the plugin runs geoseg in a subprocess."""
    allowed = set(sys.stdlib_module_names) | {"qgis", "processing"}
    for file in sorted(SOURCE.glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = {str(node.module).split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{file.name}: imports {roots - allowed}"


def test_install_copies_the_plugin_and_refuses_to_replace_it_silently(tmp_path: Path) -> None:
    target = install_plugin(tmp_path / "plugins")
    assert target == tmp_path / "plugins" / PLUGIN_NAME
    assert (target / "geoseg.json").is_file() and (target / "algorithms.py").is_file()
    with pytest.raises(OutputExistsError, match="installed there already; pass --overwrite"):
        install_plugin(tmp_path / "plugins")
    (target / "stale.py").write_text("")
    install_plugin(tmp_path / "plugins", overwrite=True)
    assert not (target / "stale.py").exists()
    assert sorted(p.name for p in (tmp_path / "plugins").iterdir()) == [PLUGIN_NAME]


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["qgis-plugin", "install", "--plugins-dir", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert f"{tmp_path / 'p' / PLUGIN_NAME}: installed" in res.output
    res = runner.invoke(cli, ["qgis-plugin", "install", "--plugins-dir", str(tmp_path / "p")])
    assert res.exit_code == 1 and "pass --overwrite" in res.output
    res = runner.invoke(cli, ["qgis-plugin", "zip", str(tmp_path / "g.zip")])
    assert res.exit_code == 0 and zipfile.is_zipfile(tmp_path / "g.zip"), res.output
    res = runner.invoke(cli, ["qgis-plugin", "choices"])
    assert res.exit_code == 0 and json.loads(res.output) == choices()


def test_importing_the_installer_needs_no_torch() -> None:
    code = "import sys, geoseg.qgis, geoseg.cli.qgis_plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
