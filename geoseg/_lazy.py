"""Lazy package attributes: names that import their module on first use (PEP 562)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
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


class _Deferred:
    """Stands for an optional module imported during another library's start-up: the module's
    own code runs on the first attribute taken from it. Not a module object, so code that walks
    ``sys.modules`` reading every module's attributes (``inspect.getmodule``) passes it by."""

    _lock = threading.Lock()

    def __init__(self, name: str, spec: Any) -> None:
        self.__dict__["_name"] = name
        # what ``import`` and ``importlib.util.find_spec`` read of a module in sys.modules
        self.__dict__["__spec__"] = spec

    def __getattr__(self, attr: str) -> Any:
        name = self.__dict__["_name"]
        with self._lock:  # one thread takes the stand-in out; the import has locks of its own
            if sys.modules.get(name) is self:  # type: ignore[comparison-overlap]
                del sys.modules[name]
        return getattr(importlib.import_module(name), attr)

    def __repr__(self) -> str:
        return f"<deferred module {self.__dict__['_name']!r}>"


@contextlib.contextmanager
def imports_deferred(*names: str) -> Iterator[None]:
    """Within the block, ``import name`` of an installed, not yet imported module gives a
    stand-in that imports the module on first use; after it, ``import name`` imports the module
    as usual. What the block imported keeps its stand-in, which then works like the module.

    For optional imports that other libraries make at start-up and geoseg's work does not use:
    timm imports Weights & Biases, when installed, for a training-summary helper (0.4 s).
    """
    placed: dict[str, _Deferred] = {}
    for name in names:
        spec = None if name in sys.modules else importlib.util.find_spec(name)
        if spec is not None:
            sys.modules[name] = placed[name] = _Deferred(name, spec)  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, stand_in in placed.items():
            with _Deferred._lock:
                if sys.modules.get(name) is stand_in:  # type: ignore[comparison-overlap]
                    del sys.modules[name]
