"""The geoseg Processing provider for QGIS: plain PyQGIS that runs the ``geoseg`` command line.

QGIS loads this folder as a plugin (``classFactory``); ``qgis_process`` loads its provider too
(``hasProcessingProvider=yes``). Nothing here imports geoseg itself: QGIS's Python has no torch,
so every algorithm runs the geoseg executable of the user's own environment in a subprocess.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GeosegPlugin", "classFactory"]


class GeosegPlugin:
    """Registers the provider when QGIS (or qgis_process) starts the plugin."""

    def __init__(self, iface: Any = None) -> None:
        self.iface = iface
        self.provider: Any = None

    def initProcessing(self) -> None:
        from qgis.core import QgsApplication

        from .provider import GeosegProvider

        self.provider = GeosegProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()

    def unload(self) -> None:
        from qgis.core import QgsApplication

        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None


def classFactory(iface: Any) -> GeosegPlugin:
    """QGIS's entry point."""
    return GeosegPlugin(iface)
