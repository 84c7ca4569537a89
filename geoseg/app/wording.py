"""The library's messages in the app's own words.

Errors and warnings of the library end with a fix written for the command line (``--bands
1,1,1``). On the page the same fix is a box to fill in, or something to do to the image before
uploading it, or a setting only the server's operator has; :func:`in_app_words` rewrites the
options each way and drops advice that has no meaning here.
"""

from __future__ import annotations

import re

__all__ = ["FORM_FIELDS", "in_app_words"]

# options that are boxes of the page's "Prediction settings"
FORM_FIELDS = {
    "--bands": "Bands",
    "--tile-size": "Tile size",
    "--overlap": "Overlap",
    "--tta": "Test-time augmentation",
    "--precision": "Precision",
    "--scale": "Value range",
}

_VALUE = r"(?P<value>[^\s;]+?(?: or [^\s;-][^\s;]*?)*)(?=[\s;]|[.,)]?$|[.,)]\s)"

# options the page does not offer: (pattern, replacement); patterns match the option with its
# values (``--scale 0,255 or --scale auto``) and, where there is one, the clause around it
_ELSEWHERE = [
    (re.compile(r",? or --strict to refuse such input"), ""),
    (re.compile(r" \(refused because of --strict\)"), ""),
    (
        re.compile(r"--resample-to-model(?: predicts at the model's pixel size)?"),
        "resampling the image to the model's pixel size before uploading it",
    ),
    (
        re.compile(r"use (?:--device [^\s;]+(?: or )?)+"),
        "ask the server's operator to change its device setting",
    ),
    (re.compile(r"--device [^\s;]+"), "the server's device setting"),
    (re.compile(r"\btile_size=(\d+)"), r"Tile size \1"),
]

_ANY_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*(?: [^\s;-][^\s;]*)?")


def in_app_words(message: str) -> str:
    """``message`` with command-line options turned into what a web user can do.

    ``--bands 1,1,1`` becomes ``Bands: 1,1,1 (Prediction settings)``, ``--scale auto`` becomes
    ``Value range: auto (Prediction settings)``; an option the page does not offer becomes advice
    or "a setting this page does not have". The result is one line.
    """
    text = " ".join(message.split())
    for option, label in FORM_FIELDS.items():
        text = re.sub(
            re.escape(option) + " " + _VALUE, rf"{label}: \g<value> (Prediction settings)", text
        )
    for pattern, replacement in _ELSEWHERE:
        text = pattern.sub(replacement, text)
    return _ANY_OPTION.sub("a setting this page does not have", text)
