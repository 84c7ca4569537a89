"""Print the requirements of geoseg and of the chosen extras, read from pyproject.toml.

The container image installs these in a layer of their own, before the code is copied in, so a
code change rebuilds only the small layer on top. Extras that pyproject.toml does not define are
reported on stderr and left out; extras that name other extras of the project are expanded.

Usage: python image-requirements.py pyproject.toml app,distributed > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    """Requirement lines of the project plus ``extras`` (self-references expanded)."""
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    name = project["name"].lower()
    optional = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    todo = [e for e in extras if e]
    seen: set[str] = set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            print(
                f"image-requirements: extra {extra!r} is not defined in {pyproject}; skipped",
                file=sys.stderr,
            )
            continue
        for req in optional[extra]:
            own = re.match(rf"\s*{re.escape(name)}\s*\[([^\]]*)\]", req, re.IGNORECASE)
            if own:
                todo.extend(e.strip() for e in own.group(1).split(","))
            else:
                out.append(req)
    print(
        "image-requirements: extras installed: "
        f"{', '.join(sorted(seen & set(optional))) or 'none'}",
        file=sys.stderr,
    )
    return list(dict.fromkeys(out))


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else [])))
