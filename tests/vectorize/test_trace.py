from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
from numba.core import types
from numba.core.registry import CPUDispatcher

import geoseg
from geoseg.vectorize._trace import trace_block
from tests.vectorize.conftest import landcover

PACKAGE = Path(geoseg.__file__).parent


def _is_njit(node: ast.FunctionDef) -> bool:
    for d in node.decorator_list:
        f = d.func if isinstance(d, ast.Call) else d
        if isinstance(f, ast.Name) and f.id in {"njit", "jit"}:
            return True
        if isinstance(f, ast.Attribute) and f.attr in {"njit", "jit"}:
            return True
    return False


def _called_from_python() -> dict[str, set[str]]:
    """Per module, the compiled functions that plain Python functions of the module call."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        compiled = {n.name for n in defs if _is_njit(n)}
        if not compiled:
            continue
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in defs:
            if _is_njit(node):
                continue
            for call in ast.walk(node):
                called = isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                if called and call.func.id in compiled:
                    found.setdefault(module, set()).add(call.func.id)
    return found


def test_no_compiled_function_hands_python_a_tuple() -> None:
    # numba boxes a returned tuple without checking its items: a signal handled while one item is
    # boxed leaves a NULL in the tuple, and unpacking it crashes the interpreter (SIGSEGV) instead
    # of raising KeyboardInterrupt. So what crosses back into Python is one array or a scalar.
    m = landcover((40, 50), 1)
    trace_block(m, np.ones(m.shape, bool), weights=np.ones(m.shape))
    entries = _called_from_python()
    assert entries, "the vectorizer's compiled entry points were not found"
    for module, names in entries.items():
        mod = importlib.import_module(module)
        for name in names:
            dispatcher = getattr(mod, name)
            assert isinstance(dispatcher, CPUDispatcher)
            assert dispatcher.nopython_signatures, f"{module}.{name} was never compiled"
            for sig in dispatcher.nopython_signatures:
                assert not isinstance(sig.return_type, types.BaseTuple), (
                    f"{module}.{name} returns {sig.return_type} to Python"
                )


def test_packed_parts_are_the_documented_arrays() -> None:
    m = landcover((33, 47), 2)
    weights = np.random.default_rng(0).random(m.shape)
    out = trace_block(m, np.ones(m.shape, bool), weights=weights)
    assert out["weight_sum"].dtype == np.float64
    np.testing.assert_allclose(out["weight_sum"].sum(), weights.sum())
    assert out["pixels"].sum() == m.size
    assert out["ring_end"][0] == 0 and out["ring_end"][-1] == out["x"].size == out["y"].size
    assert out["top"].size == out["bottom"].size == m.shape[1]
    assert out["left"].size == out["right"].size == m.shape[0]
    assert out["value"].size == out["pixels"].size == out["ring_region"].max() + 1
