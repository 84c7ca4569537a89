"""Inputs given as URLs: which the app reads, and the path GDAL reads them through.

By default the app reads URLs on the public internet only: the host is resolved and refused when
any of its addresses is loopback, private, link-local, reserved or otherwise not public (IPv4 and
IPv6), and GDAL then reads through :class:`~geoseg.app.egress.EgressProxy`, which checks every
connection again, redirects included. An operator opts in to internal servers with
``allow_private`` (``geoseg app --allow-private-urls``). Either way GDAL is told the URL's folder
is empty, so it never probes side files (``.aux.xml``, ``.ovr``, ``.msk``...) next to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from geoseg.app.egress import resolve_allowed
from geoseg.errors import UploadError

__all__ = ["RemoteInput", "check_url"]


@dataclass(frozen=True)
class RemoteInput:
    """A URL the app accepted.

    Attributes:
        url: the URL as given (spaces stripped).
        name: its file name, for messages.
    """

    url: str
    name: str

    def gdal_path(self, proxy: str | None = None, credentials: str | None = None) -> str:
        """The ``/vsicurl?`` path GDAL opens: no side-file probing, and through ``proxy`` (with
        basic-auth ``credentials``) when one is given."""
        options = ["empty_dir=yes"]
        if proxy is not None:
            options.append(f"proxy={quote(proxy, safe='')}")
            if credentials is not None:
                options.append(f"proxyuserpwd={quote(credentials, safe='')}")
        return f"/vsicurl?{'&'.join(options)}&url={quote(self.url, safe='')}"


def _shown(text: str) -> str:
    return text if len(text) <= 100 else text[:100] + "..."


def check_url(url: str, *, allowed: bool = True, allow_private: bool = False) -> RemoteInput:
    """An ``http(s)://`` URL with a host that, unless ``allow_private``, resolves to public
    addresses only.

    Raises:
        UploadError: URLs are switched off, another scheme, no host, a host that does not
            resolve, or one with a non-public address.
    """
    text = url.strip()
    if not allowed:
        raise UploadError(
            "this server does not read URLs; expected an uploaded file. Download the image and "
            "upload it"
        )
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UploadError(
            f"expected an http:// or https:// URL of a COG, got {_shown(text)!r}; paste the full "
            "URL"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UploadError(
            f"{_shown(text)}: the port is not a number from 1 to 65535; paste the full URL"
        ) from None
    name = text.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or parts.hostname
    if not allow_private:
        try:
            _, refusal = resolve_allowed(parts.hostname, port)
        except OSError:
            raise UploadError(
                f"{_shown(text)}: the host {parts.hostname} is unknown; check the URL"
            ) from None
        if refusal is not None:
            raise UploadError(
                f"{_shown(text)}: {refusal}, and this server reads URLs on the public internet "
                "only; download the image and upload it instead"
            )
    return RemoteInput(text, name)
