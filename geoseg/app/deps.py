"""The web app's optional dependency, imported on demand with an install hint."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["INSTALL_HINT", "import_gradio"]

INSTALL_HINT = "the web app needs gradio; install it with: pip install 'geoseg[app]'"


def import_gradio() -> Any:
    """``gradio``, or an :class:`ImportError` whose message says how to install it."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    try:
        import gradio
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from None
    return gradio
