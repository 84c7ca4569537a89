"""What geoseg's option values (``PredictOptions``, ``VectorizeOptions``) share."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self, cast

from geoseg.errors import GeosegError, refuse_extra_keys

__all__ = ["KnownFields"]


class KnownFields:
    """What the option dataclasses share: :meth:`replace`, and keyword overrides checked against
    their fields, an unknown key refused in one line that lists the known ones. A subclass says
    what its fields are (``FIELDS_ARE``) and which error an unknown one raises
    (``UNKNOWN_ERROR``)."""

    FIELDS_ARE: ClassVar[str] = "option"
    UNKNOWN_ERROR: ClassVar[type[GeosegError]] = GeosegError

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (and validated again)."""
        return cast(Self, dataclasses.replace(cast(Any, self), **changes))

    @classmethod
    def _refuse_unknown(cls, keys: Iterable[str]) -> None:
        refuse_extra_keys(
            keys,
            (f.name for f in dataclasses.fields(cast(Any, cls))),
            lambda extra, known: cls.UNKNOWN_ERROR(
                f"unknown {cls.FIELDS_ARE}(s) {', '.join(extra)}; expected some of {known}"
            ),
        )

    @classmethod
    def _overridden(cls, base: Self | None, overrides: Mapping[str, Any]) -> Self:
        """``base`` (or the defaults) with ``overrides`` applied."""
        value = base if base is not None else cls()
        if not overrides:
            return value
        cls._refuse_unknown(overrides)
        return value.replace(**overrides)
