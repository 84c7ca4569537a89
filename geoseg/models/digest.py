"""Digests that name a model's weights: of a checkpoint's files, or of a live module's tensors.

A module loaded from a checkpoint is remembered with the digest of its files, so a run given the
loaded module and a run given the checkpoint's path share what the model cache learnt (and so run
the same network, bit for bit), until the module's tensors change.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import weakref
import zlib
from pathlib import Path
from typing import Any

__all__ = ["file_digest", "module_digest", "remember_digest"]


def _checksum(data: Any) -> bytes:
    """CRC-32 of a buffer: several times faster than a cryptographic hash on a large model, and the
    digest combines one per tensor (or per 4 MiB of a file), so unrelated weights never collide
    in practice; the cache holds nothing that needs protection against crafted collisions."""
    return zlib.crc32(data).to_bytes(4, "little")


# file digests by (path, size, mtime, inode) of each file: a checkpoint is digested once per
# process, not again when its path and then its loaded module ask for the model cache
_FILE_DIGESTS: dict[tuple[tuple[str, int, int, int], ...], str] = {}


def file_digest(*paths: str | os.PathLike[str] | None) -> str:
    """A digest of the bytes of some files (a checkpoint's weights and config), hex.

    Remembered while each file keeps its size, modification time and inode.
    """
    files = [Path(p) for p in paths if p is not None]
    stats = [f.stat() for f in files]
    key = tuple(
        (str(f.resolve()), s.st_size, s.st_mtime_ns, s.st_ino)
        for f, s in zip(files, stats, strict=True)
    )
    known = _FILE_DIGESTS.get(key)
    if known is not None:
        return known
    h = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(len(chunk).to_bytes(8, "little") + _checksum(chunk))
        h.update(b"|")
    if len(_FILE_DIGESTS) > 64:  # a long-lived process (the web app) seeing many checkpoints
        _FILE_DIGESTS.clear()
    _FILE_DIGESTS[key] = h.hexdigest()
    return _FILE_DIGESTS[key]


Signature = tuple[tuple[int, Any], ...]
# digests of live modules, with the signature of their tensors when computed (see _signature)
_DIGESTS: weakref.WeakKeyDictionary[Any, tuple[Signature, str]] = weakref.WeakKeyDictionary()


def module_digest(model: Any) -> str:
    """A digest of a module's class, state names, dtypes, shapes and bytes, hex.

    Remembered per module while its tensors are not modified in place nor converted; a module
    loaded by :func:`~geoseg.models.load_checkpoint` answers its checkpoint's :func:`file_digest`.
    """
    import torch

    state = model.state_dict()
    signature = _signature(state)
    known = _DIGESTS.get(model)
    if known is not None and known[0] == signature:
        return known[1]
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, t in state.items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        t = t.detach().cpu().contiguous()
        if t.numel():
            h.update(_checksum(t.reshape(-1).view(torch.uint8).numpy().data))
    digest = h.hexdigest()
    with contextlib.suppress(TypeError):
        _DIGESTS[model] = (signature, digest)
    return digest


def _signature(state: dict[str, Any]) -> Signature:
    """What changes when a tensor's values may have: its version (bumped by in-place updates)
    and its dtype (a conversion)."""
    return tuple((t._version, t.dtype) for t in state.values())


def remember_digest(model: Any, digest: str) -> None:
    """Let :func:`module_digest` answer ``digest`` for ``model`` (e.g. the digest of the checkpoint
    it was loaded from) while its tensors stay as they are now."""
    with contextlib.suppress(TypeError):
        _DIGESTS[model] = (_signature(model.state_dict()), digest)
