"""The shared error helpers."""

from __future__ import annotations

import pytest

from geoseg.errors import ConfigError, GeosegError, refuse_extra_keys


def test_extra_keys_are_named_sorted_with_the_allowed_ones() -> None:
    def error(extra: list[str], allowed: str) -> GeosegError:
        return ConfigError(f"unknown {extra}; allowed: {allowed}")

    refuse_extra_keys(["b", "a"], ["a", "b", "c"], error)  # a subset passes
    with pytest.raises(ConfigError, match=r"unknown \['x', 'y'\]; allowed: a, b$"):
        refuse_extra_keys({"y": 1, "a": 2, "x": 3}, iter(["b", "a"]), error)
