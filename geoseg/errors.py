"""Every error and warning geoseg raises on purpose.

Each error inherits both :class:`GeosegError` (catch everything geoseg raises with one clause) and
the builtin that fits it (``ValueError``, ``FileNotFoundError``...), so generic handlers still work.
Messages follow one pattern: what was expected, what arrived, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class GeosegError(Exception):
    """Root of every error geoseg raises on purpose."""


class RasterOpenError(GeosegError, OSError):
    """A path or URL could not be opened as a raster."""


class RasterFormatError(GeosegError, ValueError):
    """A raster opened but cannot be used as asked (GCP-only georeferencing, wrong dtype...)."""


class OutputExistsError(GeosegError, FileExistsError):
    """The destination exists and overwriting was not asked for."""


class WriteError(GeosegError, OSError):
    """An output could not be written; nothing was left under the final name."""


class OutputCollisionError(GeosegError, ValueError):
    """An output names one of the run's inputs, or another output of the same run."""


class TilingError(GeosegError, ValueError):
    """Tile size, overlap or stride do not fit together or with the model."""


class ModelError(GeosegError, ValueError):
    """An architecture, encoder or model option is unknown or inconsistent."""


class WeightsError(GeosegError, OSError):
    """Encoder or model weights could not be found, downloaded or loaded."""


class CheckpointError(GeosegError, ValueError):
    """A checkpoint is missing, unsafe (a pickle), from a newer format, or inconsistent."""


class BandMismatchError(GeosegError, ValueError):
    """The input raster's bands do not match what the model expects."""


class DeviceError(GeosegError, RuntimeError):
    """The requested device or precision is not available."""


class GeosegWarning(UserWarning):
    """Root of every warning geoseg emits."""


class NoCRSWarning(GeosegWarning):
    """A raster has no CRS: results keep its pixel grid but cannot be placed on a map."""


class RotatedTransformWarning(GeosegWarning):
    """A raster has a rotated or sheared geotransform; outputs keep it exactly."""


class NoValidDataWarning(GeosegWarning):
    """A raster or window holds no valid pixel."""


class DatasetError(GeosegError, ValueError):
    """A dataset folder is empty, has the wrong layout, or holds files that cannot be used."""


class ConfigError(GeosegError, ValueError):
    """A training or evaluation config has an unknown key, a bad value or a missing entry."""


class TrainingError(GeosegError, RuntimeError):
    """Training cannot start or go on (no samples, a resume from another config...)."""


class AlignmentWarning(GeosegWarning):
    """Image and labels differ in CRS or resolution and are reprojected to match."""


class InputCompatibilityWarning(GeosegWarning):
    """The input differs from what the model was trained on (dtype, value range, bands, pixel
    size)."""


class LowAgreementWarning(GeosegWarning):
    """An int8 variant asked for by name agreed with fp32 less than ``--precision auto`` requires,
    or by an unknown amount."""


class InputCompatibilityError(GeosegError, ValueError):
    """The input differs from what the model was trained on, and ``strict`` refuses it."""


class NegativeClassWarning(GeosegWarning):
    """A class mask holds negative ids, which make no polygons."""


class UploadError(GeosegError, ValueError):
    """The web app refuses an input: too large, not an image it accepts, or an unsafe name or
    URL."""


class RunCancelledError(GeosegError, RuntimeError):
    """A run was stopped on request (a cancel button, a client that went away, a server shutting
    down) before it finished; nothing was published under a final name."""


class StorageError(GeosegError, OSError):
    """An object-storage path (``s3://bucket/key``) cannot be read, listed or written."""


class SchedulerError(GeosegError, RuntimeError):
    """A Dask scheduler address is malformed, unreachable, or Dask is not installed."""


class ExportError(GeosegError, RuntimeError):
    """A model could not be exported, or the exported file does not reproduce the model."""


class MissingDependencyError(GeosegError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class ExplainError(GeosegError, ValueError):
    """A layer, class, method or region asked of ``explain`` does not exist or does not fit."""


class StacError(GeosegError, ValueError):
    """A STAC item, item collection or catalog cannot be read, or lacks an asset the model
    needs."""


class DeepnessWarning(GeosegWarning):
    """Part of the model's contract (normalization, resolution) cannot be told to QGIS Deepness."""


def refuse_extra_keys(
    given: Iterable[str], allowed: Iterable[str], error: Callable[[list[str], str], GeosegError]
) -> None:
    """Raise ``error(extra, allowed_text)`` when ``given`` holds keys outside ``allowed``.

    ``extra`` is the sorted list of those keys and ``allowed_text`` the allowed ones, sorted and
    comma-separated, for the message.
    """
    allowed = set(allowed)
    extra = sorted(set(given) - allowed)
    if extra:
        raise error(extra, ", ".join(sorted(allowed)))
