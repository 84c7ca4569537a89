"""The import rules of the layout.

Held in fresh interpreters: geoseg, geoseg.io, geoseg.classes, the vectorizer, the dataset checker
and kind registry, the metrics, the configs and the CLI's help stay torch-free; io never imports
from the layers above it.

Read from the source (every import, lazy ones in functions too): no module imports a private name
(``_name``) from another package; no import cycle between modules; no import points up the layers,
written as an import statement or named in a string (``"geoseg.export.runner:load_onnx"``).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import geoseg",
        "import geoseg.io",
        "import geoseg.models.config",
        "import geoseg.evaluation.metrics, geoseg.evaluation.spacenet, geoseg.datasets.stats",
        "import geoseg.classes, geoseg.normalize, geoseg.errors",
        # checking a dataset folder and finding its files needs no torch (it once took 8 s to
        # import)
        "import geoseg.datasets.check, geoseg.datasets.kinds, geoseg.datasets.dubai, "
        "geoseg.datasets.spacenet6, geoseg.datasets.scene",
        "import geoseg.datasets, geoseg.training, geoseg.evaluation, geoseg.inference, "
        "geoseg.models",
        "import geoseg.training.config",
        "import geoseg.io.quicklook, geoseg.models.default",
        # the diagnostics arithmetic and the export/explain packages load without torch
        "import geoseg.evaluation.errormap, geoseg.evaluation.uncertainty, "
        "geoseg.evaluation.calibration, geoseg.export, geoseg.explain, geoseg.export.metadata, "
        "geoseg.io.overlay",
        # vectorizing a mask end to end, with a class table from a checkpoint's config, needs no
        # torch
        "import numpy as np, rasterio, tempfile, os; from geoseg.vectorize import "
        "vectorize_raster; d = tempfile.mkdtemp(); p = os.path.join(d, 'm.tif'); ds = "
        "rasterio.open(p, 'w', driver='GTiff', width=8, height=8, count=1, dtype='uint8'); "
        "ds.write(np.eye(8, dtype='uint8'), 1); ds.close(); vectorize_raster(p, os.path.join(d, "
        "'o.gpkg'), workers=0); from geoseg.models.config import read_config",
        "from click.testing import CliRunner; from geoseg.cli import cli; r = "
        "CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output",
    ],
)
def test_no_torch_import(code: str) -> None:
    loaded = _modules_after(code)
    assert "torch" not in loaded
    assert "torchgeo" not in loaded


def test_help_lists_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "geoseg", "--help"], capture_output=True, text=True, check=True
    )
    assert "info" in out.stdout


@pytest.mark.parametrize("package", ["geoseg.io", "geoseg.classes", "geoseg.normalize"])
def test_lower_layers_import_nothing_above(package: str) -> None:
    """io, classes and normalize sit at the bottom: importing them loads no other geoseg layer."""
    loaded = _modules_after(
        f"import {package}; import geoseg.io.quicklook"
        if package == "geoseg.io"
        else f"import {package}"
    )
    above = {
        "geoseg.vectorize",
        "geoseg.datasets",
        "geoseg.inference",
        "geoseg.models",
        "geoseg.training",
        "geoseg.evaluation",
        "geoseg.cli",
    }
    assert not {
        m for m in loaded if m.split(".")[0] == "geoseg" and ".".join(m.split(".")[:2]) in above
    }


ROOT = Path(__file__).resolve().parents[1] / "geoseg"

# lower layers first; a module may import from its own layer's packages and from those below
LAYERS: list[set[str]] = [
    {"_version", "_lazy", "errors", "classes", "normalize", "io"},
    {"models", "datasets", "vectorize"},
    {"inference", "training"},
    {"evaluation", "explain", "export", "distributed"},
    {"app", "qgis"},
    {"cli", "__main__", "__init__"},
]
# modules of pure arithmetic that sit lower than their package: training scores its validation
# batches with the evaluation metrics (numpy only, no geoseg import above the bottom layer)
MODULE_LAYER = {"evaluation.metrics": 1}
RANK = {pkg: rank for rank, layer in enumerate(LAYERS) for pkg in layer}


def rank_of(module: str) -> int:
    parts = module.split(".")
    return MODULE_LAYER.get(".".join(parts[1:3]), RANK.get(package_of(module), 0))


NAMED = re.compile(r"^geoseg(\.[a-z_0-9]+)+(:[A-Za-z_0-9]+)?$")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (never run)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports_of(path: Path) -> Iterator[tuple[str, str | None, int]]:
    """``(module imported, name or None, line)`` for every import that runs."""
    yield from imports_in(
        path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
    )


def imports_in(source: str, here: str, is_package: bool) -> Iterator[tuple[str, str | None, int]]:
    tree = ast.parse(source)
    skipped = _type_checking_blocks(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                yield target, alias.name, node.lineno


def strings_of(path: Path) -> Iterator[tuple[str, int]]:
    yield from strings_in(path.read_text(encoding="utf-8"))


def strings_in(source: str) -> Iterator[tuple[str, int]]:
    """Module names written as strings (``"geoseg.export.runner:load_onnx"``)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if NAMED.match(text):
                yield text.split(":")[0], node.lineno


SOURCES = sorted(ROOT.rglob("*.py"))
MODULES = {module_name(p) for p in SOURCES}


def _real(target: str, name: str | None) -> str | None:
    """The geoseg module an import loads (``from pkg import module`` names the module)."""
    if not target.startswith("geoseg"):
        return None
    if name and f"{target}.{name}" in MODULES:
        return f"{target}.{name}"
    return target if target in MODULES else None


def test_no_private_name_across_packages() -> None:
    bad = []
    for path in SOURCES:
        here = package_of(module_name(path))
        for target, name, line in imports_of(path):
            if (
                target.startswith("geoseg")
                and name
                and name.startswith("_")
                and not name.startswith("__")
                and package_of(target) != here
            ):
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {name} from {target}")
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)


def test_imports_point_down() -> None:
    bad = []
    for path in SOURCES:
        here = package_of(module_name(path))
        targets = [(t, line) for t, _, line in imports_of(path)]
        targets += list(strings_of(path))
        for target, line in targets:
            if not target.startswith("geoseg.") or here == "__init__":
                continue
            there = package_of(target)
            if there != here and rank_of(target) > rank_of(module_name(path)):
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {here} -> {target}")
    assert not bad, "imports pointing up the layers:\n" + "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for path in SOURCES:
        here = module_name(path)
        for target, name, _ in imports_of(path):
            real = _real(target, name)
            # a package's __init__ loads its submodules lazily: importing it is no edge to them
            if real is not None and real != here:
                graph[here].add(real)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle() -> None:
    graph = _graph()
    # the lazy-attribute tables of package __init__ files are strings, not imports: no edges
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_see_what_they_look_for() -> None:
    """The readers above find planted imports, lazy and string-named ones included (so the rules
    cannot pass by reading nothing)."""
    lazy = "def f():\n    from geoseg.io.reader import _x\n    from . import y\n"
    assert [(t, n) for t, n, _ in imports_in(lazy, "geoseg.inference.engine", False)] == [
        ("geoseg.io.reader", "_x"),
        ("geoseg.inference", "y"),
    ]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import geoseg.cli\n"
    assert [t for t, _, _ in imports_in(guarded, "geoseg.io.open", False)] == ["typing"]
    assert [t for t, _ in strings_in("x = 'geoseg.export.runner:load_onnx'\n")] == [
        "geoseg.export.runner"
    ]
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
