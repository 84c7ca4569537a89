"""The container recipe, checked without building it (building and running it: `make
image-check`)."""

from __future__ import annotations

import fnmatch
import runpy
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = ["Containerfile", "Containerfile.gpu"]


def _instructions(name: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined, comments dropped."""
    text = (REPO / name).read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_as_a_user_with_app_healthcheck_and_dependencies_before_code(name: str) -> None:
    steps = _instructions(name)
    keywords = [k for k, _ in steps]
    assert steps[-1] == ("USER", "geoseg"), "the image must end as its non-root user"
    assert "HEALTHCHECK" in keywords
    assert ("CMD", '["geoseg", "app", "--host", "0.0.0.0", "--port", "7860"]') in steps
    copies = [args for k, args in steps if k == "COPY"]
    assert copies[0].startswith("pyproject.toml "), (
        "dependencies are installed from pyproject.toml alone first"
    )
    assert copies[-1].startswith(". "), "the code comes last"
    runs = [i for i, k in enumerate(keywords) if k == "RUN"]
    code = keywords.index("COPY", keywords.index("COPY") + 1)
    assert [i for i in runs if i > code] == [runs[-1]], "one RUN after the code is copied"
    env = " ".join(args for k, args in steps if k == "ENV")
    for key in (
        "GDAL_DISABLE_READDIR_ON_OPEN",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS",
        "GEOSEG_DEFAULT_MODEL",
    ):
        assert key in env
    assert "AWS_SECRET_ACCESS_KEY" not in env, "credentials are passed at run time, never baked in"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: the last matching pattern wins, ``!``
    keeps."""
    result = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        bare = pattern.lstrip("!").replace("**/", "*")
        if fnmatch.fnmatch(path, bare) or path.startswith(bare.rstrip("/") + "/"):
            result = not keep
    return result


def test_build_context_leaves_out_local_and_generated_files() -> None:
    patterns = [
        p for p in (REPO / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")
    ]
    for path in (
        ".git/config",
        ".venv/bin/python",
        "demo_output/classes.tif",
        "runs/x/model.safetensors",
        "tests/test_container.py",
        "geoseg/__pycache__/x.pyc",
        "scripts/image-check.sh",
        "Makefile",
    ):
        assert _ignored(path, patterns), path
    for path in (
        "pyproject.toml",
        "README.md",
        "geoseg/cli/__init__.py",
        "scripts/image-requirements.py",
        "sample_data/rotterdam_ps_rgb.tif",
        "geoseg/models/weights/dubai-landcover-unet.safetensors",
    ):
        assert not _ignored(path, patterns), path


def test_image_requirements_expands_extras_and_skips_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requirements = runpy.run_path(str(REPO / "scripts" / "image-requirements.py"))["requirements"]
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "Geo-Seg"\ndependencies = ["numpy>=1.26", "click"]\n'
        '[project.optional-dependencies]\napp = ["gradio>=4"]\n'
        'all = ["geo-seg[app, dist]", "click"]\ndist = ["dask[distributed]>=2024.1"]\n'
    )
    assert requirements(str(pyproject), ["all", "nope"]) == [
        "numpy>=1.26",
        "click",
        "dask[distributed]>=2024.1",
        "gradio>=4",
    ]
    assert "extra 'nope' is not defined" in capsys.readouterr().err
    assert requirements(str(pyproject), []) == ["numpy>=1.26", "click"]


def test_image_requirements_of_this_project_include_torch() -> None:
    requirements = runpy.run_path(str(REPO / "scripts" / "image-requirements.py"))["requirements"]
    names = [
        shlex.split(r)[0].split(">")[0].split("<")[0].split("=")[0]
        for r in requirements(str(REPO / "pyproject.toml"), [])
    ]
    assert {"torch", "torchvision", "rasterio"} <= set(names)
