"""Run under QGIS's own Python (not pytest's): load geoseg outputs as QGIS does and print, as
JSON, how each one draws; with --run, run a geoseg algorithm through Processing and load its
outputs as the toolbox does (runAndLoadResults), post-processors included.

/usr/bin/python3 qgis_styled.py PLUGINS_DIR [--run ALG PARAMS_JSON] [LAYER ...]
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (
    QgsApplication,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)


def describe(layer: object) -> dict[str, object]:
    """Validity, CRS and the renderer's classes (value -> [label, '#rrggbb'])."""
    renderer = layer.renderer()  # type: ignore[attr-defined]
    out: dict[str, object] = {
        "valid": layer.isValid(),  # type: ignore[attr-defined]
        "crs": layer.crs().authid(),  # type: ignore[attr-defined]
        "renderer": renderer.type() if renderer is not None else None,
    }
    if isinstance(layer, QgsRasterLayer):
        out["bands"] = layer.bandCount()
        if renderer is not None and renderer.type() == "paletted":
            out["classes"] = {
                str(int(c.value)): [c.label, c.color.name()] for c in renderer.classes()
            }
    elif renderer is not None and renderer.type() == "categorizedSymbol":
        out["field"] = renderer.classAttribute()
        out["classes"] = {
            str(c.value()): [c.label(), c.symbol().color().name()] for c in renderer.categories()
        }
    return out


def main() -> None:
    plugins, args = sys.argv[1], sys.argv[2:]
    app = QgsApplication([], False)
    app.initQgis()
    report: dict[str, object] = {}
    if args[:1] == ["--run"]:
        algorithm, params = args[1], json.loads(args[2])
        args = args[3:]
        sys.path[:0] = ["/usr/share/qgis/python/plugins", plugins]
        import processing
        from processing.core.Processing import Processing

        Processing.initialize()
        from geoseg_processing import classFactory

        plugin = classFactory(None)
        plugin.initProcessing()
        assert QgsApplication.processingRegistry().algorithmById(algorithm) is not None, [
            p.id() for p in QgsApplication.processingRegistry().providers()
        ]
        processing.runAndLoadResults(algorithm, params)
        report["loaded"] = {
            layer.source(): describe(layer) for layer in QgsProject.instance().mapLayers().values()
        }
    for path in args:
        layer = (
            QgsRasterLayer(path, "layer")
            if path.lower().endswith((".tif", ".tiff"))
            else QgsVectorLayer(path, "layer")
        )
        report[path] = describe(layer)
    print(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)  # QGIS 3.22 may crash tearing down layers after exitQgis


if __name__ == "__main__":
    main()
