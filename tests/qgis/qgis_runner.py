"""Run under QGIS's own Python: drive the plugin's runner with a real QgsProcessingFeedback and
print, as JSON, the progress it reported and the error it raised; with --cancel, cancel as soon as
geoseg reports progress.

/usr/bin/python3 qgis_runner.py PLUGINS_DIR [--cancel] GEOSEG_ARG ...
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback


class Recorder(QgsProcessingFeedback):
    def __init__(self, cancel: bool) -> None:
        super().__init__()
        self.cancel_on_progress = cancel
        self.seen: list[float] = []
        self.progressChanged.connect(self.note)

    def note(self, value: float) -> None:
        self.seen.append(value)
        if self.cancel_on_progress and 0 < value < 100:
            self.cancel()


def main() -> None:
    plugins, args = sys.argv[1], sys.argv[2:]
    cancel = args[:1] == ["--cancel"]
    args = args[1:] if cancel else args
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, plugins)
    from geoseg_processing.runner import run_geoseg

    feedback = Recorder(cancel)
    error = None
    try:
        run_geoseg(args, feedback)
    except QgsProcessingException as exc:
        error = str(exc)
    print(json.dumps({"progress": feedback.seen, "error": error}))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
