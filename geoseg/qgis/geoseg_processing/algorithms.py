"""The geoseg algorithms: predict, vectorize, explain and diagnose, each a thin wrapper that turns
Processing parameters into a geoseg command line (see :mod:`.runner`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFolder,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from .runner import installed_choices, run_geoseg

__all__ = ["ALGORITHMS"]


def _choices(key: str, default: str) -> list[str]:
    """geoseg's choice list ``key``, or just its default when geoseg cannot be asked."""
    return installed_choices().get(key) or [default]


class _LoadStyled(QgsProcessingLayerPostProcessorInterface):
    """Loads a finished output's own style (the .qml beside a COG, the style inside a
    GeoPackage): Processing opens outputs without their default style."""

    def postProcessLayer(self, layer: Any, context: Any, feedback: Any) -> None:
        if layer is not None and layer.isValid():
            message, ok = layer.loadDefaultStyle()
            if not ok:
                feedback.pushWarning(f"{layer.name()}: no style loaded ({message})")
            layer.triggerRepaint()


_POST_PROCESSORS: list[_LoadStyled] = []


class _GeosegAlgorithm(QgsProcessingAlgorithm):
    """Shared parts: the model parameters, the styled loading of outputs, the help text."""

    _name = ""
    _display = ""
    _help = ""

    def name(self) -> str:
        return self._name

    def displayName(self) -> str:
        return self._display

    def shortHelpString(self) -> str:
        return self._help

    def createInstance(self) -> _GeosegAlgorithm:
        return type(self)()

    def _add_model(self, *, onnx: bool = True) -> None:
        models = _choices("models", "quality")
        self.addParameter(
            QgsProcessingParameterEnum("MODEL", "Bundled model", options=models, defaultValue=0)
        )
        kinds = "*.safetensors *.onnx" if onnx else "*.safetensors"
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL_FILE",
                "Own model (a checkpoint; replaces the bundled model)",
                fileFilter=f"geoseg models ({kinds})",
                optional=True,
            )
        )

    def _model_args(self, parameters: dict[str, Any], context: Any) -> list[str]:
        own = self.parameterAsFile(parameters, "MODEL_FILE", context)
        if own:
            return ["--model", own]
        models = _choices("models", "quality")
        return ["--model", models[self.parameterAsEnum(parameters, "MODEL", context)]]

    def _source(self, parameters: dict[str, Any], name: str, context: Any) -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(f"{name}: expected a raster layer, got none")
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"{layer.name()}: expected a raster file (GDAL), got a {layer.providerType()} "
                "layer; save it as a GeoTIFF first (Export > Save As)"
            )
        return str(layer.source())

    def _load_styled(self, path: str, context: Any) -> None:
        if context.willLoadLayerOnCompletion(path):
            styled = _LoadStyled()
            _POST_PROCESSORS.append(styled)  # QGIS keeps a bare pointer: keep the object alive
            del _POST_PROCESSORS[:-16]
            context.layerToLoadOnCompletionDetails(path).setPostProcessor(styled)


def _advanced(parameter: Any) -> Any:
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


def _tif(path: str, name: str) -> str:
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        raise QgsProcessingException(
            f"{name}: geoseg writes Cloud-Optimized GeoTIFFs; expected a .tif name, got {path}"
        )
    return path


class PredictAlgorithm(_GeosegAlgorithm):
    _name = "predict"
    _display = "Predict class mask"
    _help = (
        "Segments a raster layer with a geoseg model into a class-mask Cloud-Optimized GeoTIFF on "
        "the same grid (uint8 class ids, 255 where the input has no data), loaded with the "
        "model's class names and colours. Optional outputs: the winning class's probability "
        "(confidence) and per-class probabilities. Runs `geoseg predict` in your geoseg "
        "environment; tile size and overlap default to the model's."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster"))
        self._add_model()
        for key, label in (
            ("TILE_SIZE", "Tile size (px; empty: the model's)"),
            ("OVERLAP", "Tile overlap (px; empty: the model's)"),
        ):
            self.addParameter(
                QgsProcessingParameterNumber(
                    key,
                    label,
                    type=QgsProcessingParameterNumber.Integer,
                    minValue=0,
                    optional=True,
                )
            )
        self.addParameter(
            QgsProcessingParameterEnum(
                "TTA", "Test-time augmentation", options=_choices("tta", "none"), defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "PRECISION", "Precision", options=_choices("precision", "auto"), defaultValue=0
            )
        )
        self.addParameter(
            _advanced(QgsProcessingParameterString("DEVICE", "Device", defaultValue="auto"))
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Class mask"))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "CONFIDENCE", "Confidence", optional=True, createByDefault=False
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "PROBABILITIES", "Class probabilities", optional=True, createByDefault=False
            )
        )

    def processAlgorithm(self, parameters: Any, context: Any, feedback: Any) -> dict[str, Any]:
        src = self._source(parameters, "INPUT", context)
        dst = _tif(self.parameterAsOutputLayer(parameters, "OUTPUT", context), "OUTPUT")
        args = ["predict", src, dst, *self._model_args(parameters, context)]
        for key, option in (("TILE_SIZE", "--tile-size"), ("OVERLAP", "--overlap")):
            if parameters.get(key) not in (None, ""):
                args += [option, str(self.parameterAsInt(parameters, key, context))]
        tta = _choices("tta", "none")[self.parameterAsEnum(parameters, "TTA", context)]
        precision = _choices("precision", "auto")[
            self.parameterAsEnum(parameters, "PRECISION", context)
        ]
        device = self.parameterAsString(parameters, "DEVICE", context) or "auto"
        args += ["--tta", tta, "--precision", precision, "--device", device]
        results = {"OUTPUT": dst}
        for key, option in (("CONFIDENCE", "--confidence"), ("PROBABILITIES", "--probabilities")):
            path = self.parameterAsOutputLayer(parameters, key, context)
            if path:
                args += [option, _tif(path, key)]
                results[key] = path
        run_geoseg([*args, "--overwrite"], feedback)
        self._load_styled(dst, context)
        return results


class VectorizeAlgorithm(_GeosegAlgorithm):
    _name = "vectorize"
    _display = "Vectorize class mask"
    _help = (
        "Turns a class mask (e.g. the output of Predict class mask) into polygons with class "
        "names, areas in square metres and the mask's CRS, styled with the mask's class colours. "
        "Runs `geoseg vectorize` in your geoseg environment."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Class mask"))
        self.addParameter(
            QgsProcessingParameterEnum(
                "CONNECTIVITY", "Connectivity", options=["4", "8"], defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "MIN_AREA",
                "Drop polygons smaller than (m²)",
                type=QgsProcessingParameterNumber.Double,
                minValue=0,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                "SIMPLIFY", "Simplify (map units, or pixels as 1.5px)", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                "REGULARIZE", "Square up building footprints", defaultValue=False
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                "CONFIDENCE", "Confidence raster (adds mean_confidence)", optional=True
            )
        )
        output = QgsProcessingParameterVectorDestination(
            "OUTPUT", "Polygons", type=QgsProcessing.TypeVectorPolygon
        )
        self.addParameter(output)

    def processAlgorithm(self, parameters: Any, context: Any, feedback: Any) -> dict[str, Any]:
        mask = self._source(parameters, "INPUT", context)
        dst = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        args = ["vectorize", mask, dst]
        args += [
            "--connectivity",
            ["4", "8"][self.parameterAsEnum(parameters, "CONNECTIVITY", context)],
        ]
        if parameters.get("MIN_AREA") not in (None, ""):
            args += ["--min-area", str(self.parameterAsDouble(parameters, "MIN_AREA", context))]
        simplify = self.parameterAsString(parameters, "SIMPLIFY", context)
        if simplify:
            args += ["--simplify", simplify]
        if self.parameterAsBool(parameters, "REGULARIZE", context):
            args.append("--regularize")
        if parameters.get("CONFIDENCE"):
            args += ["--confidence", self._source(parameters, "CONFIDENCE", context)]
        run_geoseg([*args, "--overwrite"], feedback)
        self._load_styled(dst, context)
        return {"OUTPUT": dst}


class ExplainAlgorithm(_GeosegAlgorithm):
    _name = "explain"
    _display = "Explain model (Grad-CAM)"
    _help = (
        "Writes what the model looks at for one class as a float32 COG on the input's grid "
        "(Grad-CAM, Grad-CAM++), or a layer's activations. Needs a checkpoint (not .onnx). Runs "
        "`geoseg explain` in your geoseg environment."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster"))
        self._add_model(onnx=False)
        self.addParameter(QgsProcessingParameterString("CLASS", "Class (name or id)"))
        self.addParameter(
            QgsProcessingParameterEnum(
                "METHOD", "Method", options=_choices("explain_methods", "gradcam"), defaultValue=0
            )
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Heat map"))

    def processAlgorithm(self, parameters: Any, context: Any, feedback: Any) -> dict[str, Any]:
        src = self._source(parameters, "INPUT", context)
        dst = _tif(self.parameterAsOutputLayer(parameters, "OUTPUT", context), "OUTPUT")
        method = _choices("explain_methods", "gradcam")[
            self.parameterAsEnum(parameters, "METHOD", context)
        ]
        args = ["explain", src, dst, *self._model_args(parameters, context), "--method", method]
        args += ["--class", self.parameterAsString(parameters, "CLASS", context)]
        run_geoseg([*args, "--overwrite"], feedback)
        return {"OUTPUT": dst}


class DiagnoseAlgorithm(_GeosegAlgorithm):
    _name = "diagnose"
    _display = "Diagnose model against labels"
    _help = (
        "Runs a model over a raster with a label raster on its grid and writes, into the output "
        "folder, an error map (true -> predicted, with a legend), entropy and margin, per-cell "
        "metrics (cells.gpkg), a reliability diagram and index.md. Runs `geoseg diagnose` in your "
        "geoseg environment."
    )

    def initAlgorithm(self, config: Any = None) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster"))
        self.addParameter(QgsProcessingParameterRasterLayer("LABELS", "Label raster"))
        self._add_model()
        self.addParameter(
            QgsProcessingParameterNumber(
                "CELL",
                "Cell size for per-cell metrics (px)",
                type=QgsProcessingParameterNumber.Integer,
                minValue=8,
                defaultValue=256,
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT", "Output folder"))
        self.addOutput(QgsProcessingOutputRasterLayer("ERRORS", "Error map"))
        self.addOutput(QgsProcessingOutputVectorLayer("CELLS", "Per-cell metrics"))
        self.addOutput(QgsProcessingOutputFolder("FOLDER", "Diagnostics folder"))

    def processAlgorithm(self, parameters: Any, context: Any, feedback: Any) -> dict[str, Any]:
        image = Path(self._source(parameters, "INPUT", context))
        labels = Path(self._source(parameters, "LABELS", context))
        out = Path(self.parameterAsString(parameters, "OUTPUT", context))
        out.mkdir(parents=True, exist_ok=True)
        cell = self.parameterAsInt(parameters, "CELL", context)
        with tempfile.TemporaryDirectory(prefix="geoseg-diagnose-") as tmp:
            # geoseg diagnose pairs images and labels by name in two folders
            for folder, path in (("images", image), ("labels", labels)):
                (Path(tmp) / folder).mkdir()
                link = Path(tmp) / folder / f"{image.stem}{path.suffix}"
                try:
                    link.symlink_to(path)
                except OSError:  # no symlinks (Windows without developer mode): copy
                    import shutil

                    shutil.copyfile(path, link)
            args = [
                "diagnose",
                self._model_args(parameters, context)[1],  # the checkpoint is an argument here
                "--images",
                str(Path(tmp) / "images"),
                "--labels",
                str(Path(tmp) / "labels"),
                "-o",
                str(out),
                "--cell",
                str(cell),
            ]
            run_geoseg(args, feedback)
        errors = next(iter(sorted(out.glob("*/errors.tif"))), None)
        cells = out / "cells.gpkg"
        results: dict[str, Any] = {"OUTPUT": str(out), "FOLDER": str(out)}
        found: list[tuple[str, Path | None, str]] = [
            ("ERRORS", errors, str(errors)),
            ("CELLS", cells, f"{cells}|layername=cells"),
        ]
        for key, file, uri in found:
            if file is not None and file.exists():
                results[key] = uri
                context.addLayerToLoadOnCompletion(
                    uri, QgsProcessingContext.LayerDetails(file.stem, context.project(), key)
                )
                self._load_styled(uri, context)
        return results


ALGORITHMS = (PredictAlgorithm, VectorizeAlgorithm, ExplainAlgorithm, DiagnoseAlgorithm)
