"""The Processing provider: the geoseg algorithms and the "geoseg executable" setting."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsProcessingProvider

from .algorithms import ALGORITHMS
from .runner import SETTING

__all__ = ["GeosegProvider"]


def _config() -> Any:
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:  # the processing plugin is absent: no settings page
        return None, None
    return ProcessingConfig, Setting


class GeosegProvider(QgsProcessingProvider):
    """geoseg's algorithms, each running the geoseg command line of the user's environment."""

    def load(self) -> bool:
        config, setting = _config()
        if config is not None:
            config.settingIcons[self.name()] = self.icon()
            config.addSetting(
                setting(
                    self.name(),
                    SETTING,
                    "geoseg executable (empty: the one `geoseg qgis-plugin install` recorded, "
                    "else geoseg on PATH)",
                    "",
                    valuetype=setting.FILE,
                )
            )
            config.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        config, _ = _config()
        if config is not None:
            config.removeSetting(SETTING)

    def id(self) -> str:
        return "geoseg"

    def name(self) -> str:
        return "geoseg"

    def longName(self) -> str:
        return "geoseg: segment satellite and aerial imagery"

    def loadAlgorithms(self) -> None:
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())
