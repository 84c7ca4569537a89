"""Lazy package attributes: names that import their module on first use (PEP 562)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_attributes(
    package: str, modules: Mapping[str, str], names: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for names that live in other modules.

    Args:
        package: the package's ``__name__``.
        modules: module -> the names it holds, space-separated (``{".cam": "METHODS list"}``);
            a module starting with ``.`` is relative to ``package``.
        names: the package's ``__all__`` (what ``dir()`` lists).

    Raises:
        ValueError: a name is given twice, or is not in ``names``.
    """
    where: dict[str, str] = {}
    for module, held in modules.items():
        for name in held.split():
            if name in where or name not in names:
                raise ValueError(f"{package}: {name!r} is listed twice or missing from __all__")
            where[name] = module

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(
            importlib.import_module(module, package if module.startswith(".") else None), name
        )

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
