"""How the web app runs: where models come from, where it listens, and its limits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from geoseg.errors import ConfigError, GeosegWarning

__all__ = ["LOOPBACK_HOSTS", "AppConfig", "ExposedWithoutAuthWarning", "is_loopback"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ExposedWithoutAuthWarning(GeosegWarning):
    """The app listens beyond this machine and nobody has to log in."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass(frozen=True)
class AppConfig:
    """Settings of one app instance.

    Attributes:
        models_dir: folder whose ``*.safetensors`` checkpoints the model picker offers (not
            searched recursively); ``None``: the bundled model only.
        include_bundled: offer the bundled land-cover model too.
        host: address to bind; ``127.0.0.1`` keeps the app on this machine.
        port: TCP port (0: any free port).
        max_size_mb: largest upload accepted, in megabytes.
        max_megapixels: largest image accepted (width x height, in millions of pixels), upload or
            URL; checked from the header before any tile runs.
        auth: ``(user, password)`` pairs required to use the app, if any.
        concurrency: predictions running at the same time; more requests wait in the queue.
        queue_size: requests that may wait; more are refused until the queue drains.
        keep_minutes: a request's folder (upload copy and results) is removed this long after it
            ran.
        allow_urls: accept ``http(s)://`` URLs of COGs as input.
        allow_private_urls: also read URLs whose host is loopback, private, link-local or
            reserved (an internal server); by default only public internet addresses are read.
        device: where models run (``auto``, ``cpu``, ``cuda``).
        workdir: parent of the per-request folders (``None``: the system temp folder).
    """

    models_dir: Path | None = None
    include_bundled: bool = True
    host: str = "127.0.0.1"
    port: int = 7860
    max_size_mb: float = 200.0
    max_megapixels: float = 100.0
    auth: tuple[tuple[str, str], ...] = ()
    concurrency: int = 1
    queue_size: int = 16
    keep_minutes: float = 60.0
    allow_urls: bool = True
    allow_private_urls: bool = False
    device: str = "auto"
    workdir: Path | None = None

    def __post_init__(self) -> None:
        if self.models_dir is not None:
            folder = Path(os.fspath(self.models_dir)).expanduser()
            if not folder.is_dir():
                raise ConfigError(
                    f"--models {folder}: expected a folder of .safetensors checkpoints, found no "
                    "such folder; create it or point --models elsewhere"
                )
            object.__setattr__(self, "models_dir", folder.resolve())
        if self.max_size_mb <= 0:
            raise ConfigError(f"max_size_mb must be > 0, got {self.max_size_mb}; e.g. 200")
        if self.max_megapixels <= 0:
            raise ConfigError(f"max_megapixels must be > 0, got {self.max_megapixels}; e.g. 100")
        if self.concurrency < 1 or self.queue_size < 1:
            raise ConfigError(
                f"concurrency and queue_size must be >= 1, got {self.concurrency} and "
                f"{self.queue_size}"
            )
        if self.keep_minutes <= 0:
            raise ConfigError(f"keep_minutes must be > 0, got {self.keep_minutes}; e.g. 60")

    @property
    def max_bytes(self) -> int:
        return int(self.max_size_mb * 1_000_000)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    def exposure_warning(self) -> str | None:
        """A warning text when the app listens beyond this machine without a login, else None."""
        if is_loopback(self.host) or self.auth:
            return None
        return (
            f"the app listens on {self.host}:{self.port}, reachable from other machines, and "
            "nobody has to log in; pass --auth USER:PASSWORD, or bind 127.0.0.1 and put it behind "
            "a proxy that authenticates"
        )
