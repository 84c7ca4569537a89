"""Run under QGIS's own Python, with the QGIS Deepness plugin (and its onnxruntime and OpenCV)
importable: segment a raster with a model as the plugin's dock widget would, with the defaults it
loads from the model's metadata, headless; write the class mask and print, as JSON, the defaults
and the plugin's grid.

/usr/bin/python3 deepness_runner.py MODEL.onnx RASTER OUT.tif

The mask holds class ids, and 255 where Deepness wrote nothing. Mirrors
``DeepnessDockWidget._load_default_model_parameters`` and ``get_segmentation_parameters``
(Deepness 0.6), with the whole layer processed and every band an input channel.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer


def main() -> None:
    model_path, raster, out = sys.argv[1:4]
    app = QgsApplication([], False)
    app.initQgis()
    import numpy as np
    from deepness.common.channels_mapping import ChannelsMapping, ImageChannelStandaloneBand
    from deepness.common.processing_overlap import ProcessingOverlap, ProcessingOverlapOptions
    from deepness.common.processing_parameters.map_processing_parameters import (
        ProcessedAreaType,
    )
    from deepness.common.processing_parameters.segmentation_parameters import (
        SegmentationParameters,
    )
    from deepness.processing.map_processor.map_processor_segmentation import (
        MapProcessorSegmentation,
    )
    from deepness.processing.models.model_base import ModelBase
    from deepness.processing.models.model_types import ModelDefinition, ModelType
    from osgeo import gdal

    layer = QgsRasterLayer(raster, "raster")
    if not layer.isValid():
        raise SystemExit(f"{raster}: QGIS cannot open it")
    QgsProject.instance().addMapLayer(layer)
    model_type = ModelType(ModelBase.get_model_type_from_metadata(model_path))
    model = ModelDefinition.get_definition_for_type(model_type).model_class(model_path)
    defaults = {
        "model_type": model_type.value,
        "resolution": model.get_metadata_resolution(),
        "tile_size": model.get_input_size_in_pixels()[0],
        "tiles_overlap": model.get_metadata_tiles_overlap(),
        "seg_thresh": model.get_metadata_segmentation_threshold(),
        "seg_small_segment": model.get_metadata_segmentation_small_segment(),
    }
    mapping = ChannelsMapping()
    mapping.set_image_channels(
        [
            ImageChannelStandaloneBand(band_number=b, name=layer.bandName(b))
            for b in range(1, layer.bandCount() + 1)
        ]
    )
    mapping.set_number_of_model_inputs_same_as_image_channels()
    # the dock widget's check boxes are ticked when the metadata's value is not 0
    threshold, small = defaults["seg_thresh"], defaults["seg_small_segment"]
    params = SegmentationParameters(
        resolution_cm_per_px=defaults["resolution"],
        tile_size_px=defaults["tile_size"],
        batch_size=1,
        local_cache=False,
        processed_area_type=ProcessedAreaType.ENTIRE_LAYER,
        mask_layer_id=None,
        input_layer_id=layer.id(),
        input_channels_mapping=mapping,
        postprocessing_dilate_erode_size=small if small else 0,
        processing_overlap=ProcessingOverlap(
            ProcessingOverlapOptions.OVERLAP_IN_PERCENT, percentage=defaults["tiles_overlap"]
        ),
        pixel_classification__probability_threshold=threshold if threshold else 0,
        model=model,
    )
    processor = MapProcessorSegmentation(
        rlayer=layer, vlayer_mask=None, map_canvas=None, params=params
    )
    processor.run()
    result = processor.get_result_img()[0]  # class + 1, 0 where nothing was written
    mask = np.where(result > 0, result.astype(np.int16) - 1, 255).astype(np.uint8)
    src = gdal.Open(raster)
    dst = gdal.GetDriverByName("GTiff").Create(out, mask.shape[1], mask.shape[0], 1, gdal.GDT_Byte)
    dst.SetGeoTransform(src.GetGeoTransform())
    dst.SetProjection(src.GetProjection())
    dst.GetRasterBand(1).WriteArray(mask)
    dst.GetRasterBand(1).SetNoDataValue(255)
    dst = None
    grid = {"shape": list(mask.shape), "tiles": processor.x_bins_number * processor.y_bins_number}
    print(json.dumps({"defaults": defaults, **grid}))
    sys.stdout.flush()
    os._exit(0)  # QGIS's exit can crash headless after a run


if __name__ == "__main__":
    main()
