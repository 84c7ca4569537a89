"""The documentation site: its pages' code blocks run or parse, and it builds in strict mode.

``python`` blocks run as written, page by page, in a folder of small generated data (the
README's: ``test_readme.py``); ``py`` blocks, which need a server, a cluster or real data, say so
in a first ``# needs`` line; every ``geoseg`` and ``make`` line of a shell block names a command,
options and targets that exist. The site is built once per session, strict (a broken link, anchor
or API reference fails), and its pages are checked for what a reader looks for.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from geoseg.cli import cli
from tests.conftest import REPO
from tests.test_readme import python_blocks, run_blocks, write_workspace

PAGES = sorted((REPO / "docs").rglob("*.md"))
MARKDOWN = [REPO / "README.md", *PAGES]
RUNNABLE = [p for p in PAGES if python_blocks(p.read_text(encoding="utf-8"))]
COMMANDS = ["info", "predict", "vectorize", "dataset", "train", "evaluate", "diagnose", "explain"]
COMMANDS += ["export", "quantize", "models", "app", "qgis-plugin"]


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


def shell_lines(text: str) -> list[str]:
    """The command lines of a Markdown text's ``bash`` blocks (continuations joined, comments
    cut)."""
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```$", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_shell_lines_are_found() -> None:
    text = "```bash\ngeoseg info a.tif   # describe\ngeoseg predict a.tif \\\n  b.tif\n```\n"
    assert shell_lines(text) == ["geoseg info a.tif", "geoseg predict a.tif    b.tif"]


def test_every_page_is_in_the_site_and_every_command_has_a_page() -> None:
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    assert [p for p in PAGES if _name(p).removeprefix("docs/") not in nav] == []
    assert sorted(p.stem for p in (REPO / "docs" / "commands").glob("*.md")) == sorted(
        [*COMMANDS, "index"]
    )
    assert sorted(c for c in cli.list_commands(None)) == sorted(COMMANDS)  # type: ignore[arg-type]


@pytest.mark.parametrize("page", MARKDOWN, ids=_name)
def test_blocks_that_do_not_run_say_why(page: Path) -> None:
    for block in re.findall(r"^```py\n(.*?)^```$", page.read_text(encoding="utf-8"), re.S | re.M):
        assert block.startswith("# needs "), f"{_name(page)}: {block[:80]}"


@pytest.mark.parametrize("page", MARKDOWN, ids=_name)
def test_command_lines_name_real_commands_and_options(page: Path) -> None:
    """Each ``geoseg ...`` line parses (its command and options exist; ``--help`` stops it before
    it runs), and each ``make`` target is in the Makefile. Synopsis lines (``[--opt]``) are left
    to the generated option reference."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    bad = []
    for line in shell_lines(page.read_text(encoding="utf-8")):
        words = shlex.split(line)
        if words[0] == "geoseg" and not any(w.startswith("[") for w in words):
            result = CliRunner().invoke(cli, [*words[1:], "--help"])
            if result.exit_code != 0:
                bad.append(f"{line}: {result.output.strip()[:200]}")
        elif words[0] == "make":
            targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
            bad += [f"{line}: no target {t}" for t in targets if f"\n{t}:" not in makefile]
    assert bad == [], "\n".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=_name)
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    run_blocks(page)
    assert set(os.listdir(tmp_path)) > before  # the blocks wrote their outputs here


def test_the_api_page_runs_its_examples() -> None:
    assert _name(REPO / "docs" / "api" / "index.md") in [_name(p) for p in RUNNABLE]


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The site, built once per session, strict."""
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_jupyter"):
        pytest.importorskip(module, reason="the docs build needs the docs extra (make docs)")
    pytest.importorskip("mkdocs_click", reason="the docs build needs the docs extra (make docs)")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert proc.returncode == 0, "\n".join(warnings) or proc.stderr[-3000:]
    yield out


@pytest.mark.slow
def test_site_builds_strict_with_every_page(site: Path) -> None:
    built = {p.relative_to(site).parent.as_posix() for p in site.rglob("index.html")}
    expected = {
        "."
        if p.name == "index.md" and p.parent == REPO / "docs"
        else p.relative_to(REPO / "docs").with_suffix("").as_posix().removesuffix("/index")
        for p in PAGES
    }
    expected |= {f"notebooks/{p.stem}" for p in (REPO / "notebooks").glob("*.ipynb")}
    assert expected <= built, sorted(expected - built)
    for picture in (REPO / "docs").glob("*.png"):  # the README shows them too
        assert (site / picture.name).read_bytes() == picture.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_page_lists_the_commands_options(site: Path, command: str) -> None:
    from click import Context, Group

    page = (site / "commands" / command / "index.html").read_text(encoding="utf-8")
    cmd = cli.get_command(Context(cli), command)
    assert cmd is not None
    subcommands = list(cmd.commands.values()) if isinstance(cmd, Group) else []
    options = [o for c in (cmd, *subcommands) for p in c.params for o in p.opts if o[:2] == "--"]
    missing = [o for o in options if o not in page]
    assert options and missing == []
    assert "Sentinel.UNSET" not in page  # click's "no default" marker is not shown as a default


@pytest.mark.slow
def test_api_pages_document_the_public_names(site: Path) -> None:
    import geoseg

    pages = "".join(p.read_text(encoding="utf-8") for p in (site / "api").rglob("index.html"))
    missing = [n for n in geoseg.__all__ if n != "__version__" and f'.{n}"' not in pages]
    assert missing == []
