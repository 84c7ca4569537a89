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


def _bash(script: str, tmp_path: Path) -> list[str]:
    """Run ``script`` with scripts/process-groups.sh sourced; its stdout lines."""
    import subprocess

    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source scripts/process-groups.sh; {script}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _alive(pid: int) -> bool:
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
    finally:
        with __import__("contextlib").suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def test_stop_groups_stops_a_wrapper_with_its_children_and_a_stubborn_grandchild(
    tmp_path: Path,
) -> None:
    # a wrapper (like chroot -> env -> sh) whose children outlive a plain `kill $!` of it; one
    # of them ignores SIGTERM
    out = _bash(
        """
        STOP_GRACE=1
        start_group "$DIR/log" bash -c 'sleep 300 & (trap "" TERM; exec sleep 301) & wait'
        group=$STARTED
        for _ in $(seq 100); do
            [[ $(group_members "$group" | wc -l) -ge 3 ]] && break
            sleep 0.1
        done
        echo "before:$(group_members "$group" | wc -l)"
        group_members "$group" | sed 's/^/pid:/'
        stop_groups "$group"
        echo "after:$(group_members "$group" | wc -l)"
        """,
        tmp_path,
    )
    assert out[0] == "before:3" and out[-1] == "after:0", out
    pids = [int(w[4:]) for w in out if w.startswith("pid:")]
    assert len(pids) == 3 and not any(_alive(p) for p in pids)


def test_rooted_in_finds_what_runs_in_a_chroot_even_outside_its_group(tmp_path: Path) -> None:
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("chroot and a bind mount need root (CI runs the tests as root)")
    root = tmp_path / "root"
    root.mkdir()
    if subprocess.run(["mount", "--bind", "/", str(root)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount / here")
    try:
        out = _bash(
            f"""
            STOP_GRACE=1
            start_group "$DIR/log" chroot {root} /bin/sh -c 'setsid -f sleep 302; exec sleep 303'
            group=$STARTED
            for _ in $(seq 100); do
                [[ $(rooted_in {root} | wc -l) -ge 2 ]] && break
                sleep 0.1
            done
            echo "inside:$(rooted_in {root} | wc -l)"
            stop_groups "$group"
            left=$(rooted_in {root})
            echo "left:$(echo $left | wc -w)"
            describe $left | sed 's/ /_/g'
            kill -KILL $left
            """,
            tmp_path,
        )
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
    assert out[:2] == ["inside:2", "left:1"], out
    assert out[2].endswith("_sleep_302_"), out  # the one that left the group, still found


def test_every_service_in_the_image_check_is_started_as_a_group() -> None:
    import re

    script = (REPO / "scripts" / "image-check.sh").read_text()
    backgrounded = [
        line.strip()
        for line in script.splitlines()
        if re.search(r"&\s*$", line) and not line.strip().startswith("#") and "&&" not in line
    ]
    assert backgrounded == [
        '"$PYTHON" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$SCRATCH/s3.log" 2>&1 &'
    ]  # the S3 server runs outside the image: its pid is the process itself
    assert script.count("start_inside ") == 4  # the definition, the app, the scheduler, the worker
    assert 'none_inside "geoseg app"' in script
    assert 'none_inside "the Dask scheduler and worker"' in script
