"""VectorizeOptions: one validated value for every door that makes polygons."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.errors import RasterFormatError
from geoseg.vectorize import CONNECTIVITIES, LAYOUTS, VectorizeOptions


def test_loose_values_parse_into_one_value() -> None:
    opts = VectorizeOptions.parse(
        {"connectivity": "8", "exclude": "0,water", "regularize": ["building"], "sieve": None}
    )
    assert opts == VectorizeOptions(connectivity=8, exclude=(0, "water"), regularize=("building",))
    assert opts.record() == {
        "connectivity": 8,
        "sieve": None,
        "min_area": None,
        "fill_holes": None,
        "simplify": None,
        "regularize": ["building"],
        "exclude": [0, "water"],
    }
    assert VectorizeOptions.of({"min_area": 5}, simplify="1px") == VectorizeOptions(
        min_area=5, simplify="1px"
    )
    assert VectorizeOptions.of(None) == VectorizeOptions()  # None: a class named background


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"layout": "flat"}, "layout must be one of single, per-class, got 'flat'"),
        ({"connectivity": 6}, "connectivity must be 4 or 8, got 6"),
        ({"sieve": 0}, "sieve must be an integer >= 1, got 0"),
        ({"min_area": -1.0}, r"min_area must be a number of m² >= 0, got -1.0"),
        ({"simplify": "-2px"}, "simplify: expected a number >= 0"),
        ({"workers": -1}, "workers must be an integer >= 0, got -1"),
    ],
)
def test_values_out_of_range_are_refused(changes: dict, match: str) -> None:
    with pytest.raises(RasterFormatError, match=match):
        VectorizeOptions(**changes)


def test_unknown_options_are_named() -> None:
    with pytest.raises(RasterFormatError, match=r"unknown vectorize option\(s\) tolerance"):
        VectorizeOptions.of(tolerance=1)


def test_the_command_line_offers_the_library_choices() -> None:
    out = CliRunner().invoke(cli, ["vectorize", "--help"]).output
    assert "|".join(LAYOUTS) in out.replace("[", "").replace("]", "")
    assert "|".join(map(str, CONNECTIVITIES)) in out.replace("[", "").replace("]", "")
    bad = CliRunner().invoke(cli, ["vectorize", "m.tif", "o.gpkg", "--simplify", "-1"])
    assert bad.exit_code == 2 and "simplify: expected a number >= 0" in bad.output
