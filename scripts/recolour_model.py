"""Give checkpoints trained on the Dubai dataset its class table's colours, weights untouched.

python scripts/recolour_model.py MODEL.safetensors [MORE.safetensors ...]

Only the ``classes`` of the JSON config in the safetensors header change (to
``geoseg.datasets.dubai.DUBAI_CLASSES``, whose names must match); the tensor bytes are copied as
they are, so the weights stay byte-identical (checked before the file is replaced).
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

from geoseg.datasets.dubai import DUBAI_CLASSES


def recolour(path: Path) -> bool:
    """Rewrite ``path``'s class colours; False when they were already the table's."""
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    data = raw[8 + size :]
    config = json.loads(header["__metadata__"]["geoseg_config"])
    names = [c["name"] for c in config["classes"]]
    if names != DUBAI_CLASSES.names:
        sys.exit(f"{path}: classes {names}, expected {DUBAI_CLASSES.names}")
    if config["classes"] == DUBAI_CLASSES.to_list():
        return False
    config["classes"] = DUBAI_CLASSES.to_list()
    header["__metadata__"]["geoseg_config"] = json.dumps(config, indent=2)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    out = struct.pack("<Q", len(text)) + text + data
    if out[8 + len(text) :] != data:
        sys.exit(f"{path}: the weights would change; nothing written")
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(out)
    os.replace(tmp, path)
    return True


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        print(f"{arg}: {'recoloured' if recolour(Path(arg)) else 'already in the table colours'}")
