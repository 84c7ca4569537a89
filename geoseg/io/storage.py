"""Object storage beside local paths: ``s3://bucket/key`` inputs and outputs.

GDAL reads COGs straight from the bucket (``/vsis3/``, range requests). Outputs are never
streamed into the bucket: they are built in a local temporary folder by the usual atomic writers,
then uploaded, the main file last. S3 makes an object visible only once its upload completes (a
multipart upload that is not completed never appears), so an interrupted run leaves no object, and
no half object, under the final key.

Credentials come from the standard AWS environment variables or profile
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws``). An S3-compatible
store (MinIO, Ceph, a local test server) is named with ``AWS_ENDPOINT_URL=http://host:port``,
which both boto3 and, through :func:`gdal_options`, GDAL follow; GDAL's own ``AWS_S3_ENDPOINT``,
``AWS_HTTPS`` and ``AWS_VIRTUAL_HOSTING`` work too. Needs ``boto3`` only to write, list or
download (``pip install 'geoseg[s3]'``); reading a raster needs nothing but GDAL.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from geoseg.errors import OutputExistsError, StorageError

__all__ = [
    "HTTP_DEFAULTS",
    "apply_environment",
    "download",
    "exists",
    "gdal_options",
    "http_defaults",
    "is_object_url",
    "join",
    "list_objects",
    "localized",
    "published",
    "read_object",
    "split_url",
    "upload",
]

log = logging.getLogger(__name__)

SCHEME = "s3://"
# GDAL settings a worker needs to reach the same store (no secrets: workers use their own
# credentials)
FORWARDED = (
    "AWS_S3_ENDPOINT",
    "AWS_HTTPS",
    "AWS_VIRTUAL_HOSTING",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_NO_SIGN_REQUEST",
    "GDAL_HTTP_TIMEOUT",
    "GDAL_HTTP_MAX_RETRY",
    "GDAL_HTTP_RETRY_DELAY",
    "GDAL_DISABLE_READDIR_ON_OPEN",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS",
)


# GDAL's HTTP settings unless the environment sets them: a server that accepts the connection and
# never answers must end in an error, not a hang. Set any of them (e.g. GDAL_HTTP_TIMEOUT=120) to
# change it.
HTTP_DEFAULTS = {
    "GDAL_HTTP_CONNECTTIMEOUT": "10",  # seconds to connect
    "GDAL_HTTP_TIMEOUT": "60",  # seconds for a whole request
    # give up on a transfer slower than LOW_SPEED_LIMIT for this long: a server that stops
    # answering is given up after about half a minute with the retries, not minutes
    "GDAL_HTTP_LOW_SPEED_TIME": "10",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",  # bytes per second
    "GDAL_HTTP_MAX_RETRY": "2",  # retries of 429/5xx answers and timeouts
    "GDAL_HTTP_RETRY_DELAY": "1",  # seconds before the first retry (doubling)
}


def http_defaults() -> None:
    """Apply :data:`HTTP_DEFAULTS` where the environment does not set them (GDAL reads its
    configuration from the environment)."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def is_object_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an ``s3://bucket/key`` URL."""
    return str(path).startswith(SCHEME)


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b.tif`` -> ``("bucket", "a/b.tif")``.

    Raises:
        StorageError: not an ``s3://bucket/...`` URL.
    """
    parsed = urlparse(str(url))
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"{url}: expected an object URL such as s3://bucket/folder/scene.tif")
    return parsed.netloc, parsed.path.lstrip("/")


def join(folder: str | os.PathLike[str], name: str) -> str:
    """``folder/name`` for a local folder or an ``s3://bucket/prefix`` URL."""
    text = str(folder)
    if is_object_url(text):
        return text.rstrip("/") + "/" + name
    return str(Path(text) / name)


def _derived(env: dict[str, str]) -> dict[str, str]:
    """GDAL's settings for the S3-compatible endpoint ``AWS_ENDPOINT_URL`` names (boto3's
    variable), where GDAL's own are not set."""
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if not endpoint or env.get("AWS_S3_ENDPOINT"):
        return {}
    parsed = urlparse(endpoint)
    out = {"AWS_S3_ENDPOINT": parsed.netloc or parsed.path}
    if not env.get("AWS_HTTPS"):
        out["AWS_HTTPS"] = "NO" if parsed.scheme == "http" else "YES"
    if not env.get("AWS_VIRTUAL_HOSTING"):
        out["AWS_VIRTUAL_HOSTING"] = "FALSE"
    return out


# the variables apply_environment put into os.environ, with their values: ours to update or
# remove when the user's settings change, never the user's own
_APPLIED: dict[str, str] = {}


def _users(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment as the user set it (without what :func:`apply_environment` added)."""
    env = dict(os.environ if environ is None else environ)
    for key, value in _APPLIED.items():
        if env.get(key) == value:
            del env[key]
    return env


def gdal_options(environ: dict[str, str] | None = None) -> dict[str, str]:
    """GDAL configuration for the object store named in the environment (every door reads it: a
    single process through :func:`apply_environment`, a cluster's workers through the client).

    ``AWS_ENDPOINT_URL=http://127.0.0.1:9000`` becomes ``AWS_S3_ENDPOINT=127.0.0.1:9000``,
    ``AWS_HTTPS=NO`` and path-style addressing (``AWS_VIRTUAL_HOSTING=FALSE``), unless GDAL's own
    settings are already there; the settings in :data:`FORWARDED` are passed on as they are.
    """
    env = _users(environ)
    out = {k: env[k] for k in FORWARDED if env.get(k)}
    out.update(_derived(env))
    return out


def apply_environment() -> None:
    """Make GDAL, in this process, follow the storage settings of the environment: the endpoint
    of ``AWS_ENDPOINT_URL`` (:func:`gdal_options`) and the HTTP time limits of
    :data:`HTTP_DEFAULTS` where not set. GDAL reads its configuration from the environment, so
    this is how every door (predict, info, the app's URL input, explain...) reaches the same
    store; called before any URL is opened. Settings the user made are never replaced; settings
    made here follow the user's when those change."""
    http_defaults()
    derived = _derived(_users())
    for key, value in derived.items():
        if key not in os.environ or os.environ[key] == _APPLIED.get(key):
            os.environ[key] = value
            _APPLIED[key] = value
    for key in [k for k in _APPLIED if k not in derived]:
        if os.environ.get(key) == _APPLIED[key]:
            del os.environ[key]
        del _APPLIED[key]


def _endpoint_url() -> str | None:
    """The endpoint boto3 should use: ``AWS_ENDPOINT_URL`` (boto3 reads it itself), else one
    made from GDAL's ``AWS_S3_ENDPOINT``/``AWS_HTTPS``."""
    if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    host = os.environ.get("AWS_S3_ENDPOINT")
    if not host:
        return None
    if "://" in host:
        return host
    scheme = (
        "http"
        if os.environ.get("AWS_HTTPS", "YES").upper() in ("NO", "FALSE", "OFF", "0")
        else "https"
    )
    return f"{scheme}://{host}"


# boto3's limits: a store that stops answering ends in an error after a minute and a half (three
# tries of 15 s of silence, then a brief attempt to clean up), not six minutes; AWS_MAX_ATTEMPTS
# and AWS_RETRY_MODE, when set, replace the retries
S3_LIMITS: dict[str, Any] = {
    "connect_timeout": 10,
    "read_timeout": 15,
    "retries": {"max_attempts": 3, "mode": "standard"},
}


def _limits(limits: dict[str, Any]) -> dict[str, Any]:
    """``limits`` without the retries when the user set boto3's own retry variables."""
    if os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE"):
        return {k: v for k, v in limits.items() if k != "retries"}
    return limits


def _client(limits: dict[str, Any] | None = None) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise StorageError(
            "writing, listing or downloading s3:// objects needs boto3; install it with "
            "pip install 'geoseg[s3]'"
        ) from None
    addressing = (
        "path"
        if os.environ.get("AWS_VIRTUAL_HOSTING", "").upper() in ("FALSE", "NO", "0")
        else "auto"
    )
    return boto3.client(
        "s3",
        endpoint_url=_endpoint_url(),
        config=Config(s3={"addressing_style": addressing}, **_limits(limits or S3_LIMITS)),
    )


def _failure(url: str, exc: Exception, doing: str) -> StorageError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return StorageError(
        f"{url}: {doing} failed ({reason}); check the bucket name, the credentials "
        "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE) and the endpoint "
        "(AWS_ENDPOINT_URL)"
    )


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether a local file or an ``s3://`` object exists."""
    text = str(path)
    if not is_object_url(text):
        return Path(text).exists()
    bucket, key = split_url(text)
    client = _client()
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except client.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise _failure(text, exc, "looking up the object") from None
    except Exception as exc:
        raise _failure(text, exc, "looking up the object") from None


def upload(
    local: str | os.PathLike[str], url: str, *, callback: Callable[[int], None] | None = None
) -> None:
    """Upload a finished local file to ``url``; the object appears only when the upload completes.

    Args:
        local: the file to upload.
        url: ``s3://bucket/key``.
        callback: called with the bytes sent by each part (progress).

    Raises:
        StorageError: the upload failed; nothing is left under ``url``.
    """
    import datetime

    bucket, key = split_url(url)
    client = _client()
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5)
    try:
        client.upload_file(str(local), bucket, key, Callback=callback)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM: the parts sent so far must not stay stored
        left = _abort_uploads(bucket, key, started)
        if left:
            log.warning("%s: %s", url, left)
        raise
    except Exception as exc:
        error = _failure(url, exc, "uploading")
        left = _abort_uploads(bucket, key, started)
        if left:
            raise StorageError(f"{error}; {left}") from None
        raise error from None
    log.info("uploaded %s", url)


# the clean-up after a failed upload asks once and briefly: the store may be what failed
CLEANUP_LIMITS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 10,
    "retries": {"max_attempts": 1, "mode": "standard"},
}


def _abort_uploads(bucket: str, key: str, since: Any) -> str | None:
    """Abort the incomplete multipart uploads of ``key`` begun since ``since`` (a failed upload
    leaves its parts stored, and billed, until aborted). Returns what the user must do when that
    is not possible, else None."""
    try:
        client = _client(CLEANUP_LIMITS)
        pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key)
        for page in pages:
            for upload in page.get("Uploads", ()):
                if upload["Key"] == key and upload["Initiated"] >= since:
                    client.abort_multipart_upload(
                        Bucket=bucket, Key=key, UploadId=upload["UploadId"]
                    )
                    log.info("aborted the incomplete upload %s of %s", upload["UploadId"], key)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            f"its incomplete multipart upload may remain in the bucket ({reason}); list it with "
            f"aws s3api list-multipart-uploads --bucket {bucket} --prefix {key} and remove it "
            "with abort-multipart-upload, or let a lifecycle rule expire incomplete uploads"
        )
    return None


def download(url: str, local: str | os.PathLike[str]) -> Path:
    """Download ``s3://bucket/key`` to ``local`` (under a temporary name, renamed when complete)."""
    bucket, key = split_url(url)
    dst = Path(local)
    tmp = dst.with_name(f".{dst.name}.partial")
    try:
        _client().download_file(bucket, key, str(tmp))
    except Exception as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise _failure(url, exc, "downloading") from None
    os.replace(tmp, dst)
    return dst


def read_object(url: str) -> bytes:
    """The bytes of a small ``s3://bucket/key`` object (a STAC item or catalog).

    Raises:
        StorageError: it cannot be read.
    """
    bucket, key = split_url(url)
    try:
        return bytes(_client().get_object(Bucket=bucket, Key=key)["Body"].read())
    except StorageError:
        raise
    except Exception as exc:
        raise _failure(url, exc, "reading") from None


def list_objects(url: str, pattern: str | None = None) -> list[str]:
    """URLs of the objects under the prefix ``url`` (whose names match the glob ``pattern``)."""
    bucket, prefix = split_url(url)
    out: list[str] = []
    try:
        pages = _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", ()):
                key = item["Key"]
                if pattern is None or fnmatch.fnmatch(key.rsplit("/", 1)[-1], pattern):
                    out.append(f"{SCHEME}{bucket}/{key}")
    except StorageError:
        raise
    except Exception as exc:
        raise _failure(url, exc, "listing") from None
    return sorted(out)


@contextlib.contextmanager
def localized(path: str | os.PathLike[str]) -> Iterator[str]:
    """A local path for ``path``: itself, or a temporary download of an ``s3://`` object
    (removed on exit). For files GDAL cannot read in place, such as checkpoints."""
    text = str(path)
    if not is_object_url(text):
        yield text
        return
    with tempfile.TemporaryDirectory(prefix="geoseg-") as tmp:
        yield str(download(text, Path(tmp) / split_url(text)[1].rsplit("/", 1)[-1]))


def check_output(dst: str | os.PathLike[str], *, overwrite: bool) -> None:
    """Refuse an existing output (local file or object) unless ``overwrite``.

    Raises:
        OutputExistsError: it exists and ``overwrite`` is False.
    """
    text = str(dst)
    if not is_object_url(text):
        from geoseg.io.atomic import check_destination

        check_destination(text, overwrite=overwrite)
    elif not overwrite and exists(text):
        raise OutputExistsError(
            f"{text}: already exists; pass --overwrite (overwrite=True) to replace it, or choose "
            "another key"
        )


@contextlib.contextmanager
def published(dst: str | os.PathLike[str]) -> Iterator[str]:
    """Where to build ``dst``: a local ``dst`` is itself (geoseg's writers are already atomic);
    an ``s3://`` ``dst`` is a file in a temporary folder that is uploaded when the block exits
    cleanly. Side files written beside it (a ``.qml`` style) go up first, the main file last, so
    its key appears only when everything is there. On error nothing is uploaded."""
    text = str(dst)
    if not is_object_url(text):
        yield text
        return
    name = split_url(text)[1].rsplit("/", 1)[-1] or "output"
    tmp = tempfile.mkdtemp(prefix="geoseg-out-")
    try:
        local = Path(tmp) / name
        yield str(local)
        if not local.exists():
            raise StorageError(f"{text}: nothing was built to upload")
        prefix = text.rsplit("/", 1)[0]
        for side in sorted(Path(tmp).iterdir()):
            if side != local and side.is_file() and not side.name.startswith("."):
                upload(side, f"{prefix}/{side.name}")
        upload(local, text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
