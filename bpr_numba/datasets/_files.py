"""What the dataset loaders share: where data is looked up, and verified, atomic downloads.

Lookup order: the ``data_home`` argument, the folder named by
``$BPR_NUMBA_DATA``, then the per-user cache folder
(``$XDG_CACHE_HOME/bpr-numba``, by default ``~/.cache/bpr-numba``). Only the
cache folder is ever written to, and only by :func:`fetch`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from ..persistence import atomic_file

__all__ = [
    "DATA_ENV",
    "DOWNLOAD_TIMEOUT",
    "DatasetNotFoundError",
    "DownloadFailed",
    "cache_folder",
    "check_download_flag",
    "fetch",
    "search_folders",
    "write_atomic",
]

DATA_ENV = "BPR_NUMBA_DATA"
#: Seconds, per connect / read on the socket (read at each call, so tests may lower it).
DOWNLOAD_TIMEOUT = 60.0


class DatasetNotFoundError(FileNotFoundError):
    """No usable local copy of a dataset, and it could not be downloaded."""


class DownloadFailed(Exception):
    """A file could not be fetched (network error, HTTP error, too big or truncated).

    The loaders turn it into the reason of a :class:`DatasetNotFoundError`.
    """


def check_download_flag(download):
    if not isinstance(download, (bool, np.bool_)):
        raise TypeError(f"download must be True or False; got {download!r} ({type(download).__name__}).")


def cache_folder():
    """The per-user download folder: ``$XDG_CACHE_HOME/bpr-numba`` or ``~/.cache/bpr-numba``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative value
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bpr-numba"


def search_folders(data_home):
    """Return ``[(label, folder or None)]`` in lookup order (None: the variable is not set)."""
    places = []
    if data_home is not None:
        if not isinstance(data_home, (str, os.PathLike)):
            raise TypeError(f"data_home must be a str or os.PathLike folder; got {type(data_home).__name__}.")
        places.append(("data_home", Path(data_home).expanduser()))
    env = os.environ.get(DATA_ENV)
    places.append((f"${DATA_ENV}", Path(env).expanduser() if env else None))
    places.append(("cache", cache_folder()))
    return places


def write_atomic(path, data):
    """Write ``data`` (bytes) to ``path`` through a temporary file in the same folder and a rename."""
    with atomic_file(path, suffix=".part") as out:
        out.write(data)


def fetch(url, dest, *, max_bytes, what, verify=None):
    """Download ``url`` to ``dest`` atomically; return the SHA-256 (hex) of what was received.

    The body is streamed into a temporary file beside ``dest`` (``.name.*.part``),
    then ``verify(tmp_path, sha256_hex)`` is called, if given, and only if it
    returns does the file get renamed to ``dest``. Any failure (including one
    raised by ``verify``) removes the temporary file, and the folders this call
    created, so nothing is left behind.

    Parameters
    ----------
    url : str
    dest : pathlib.Path
        Final path; its folder is created when missing.
    max_bytes : int
        A response sending more is refused.
    what : str
        What the file should be, for messages ("the ml-1m archive").
    verify : callable, optional

    Raises
    ------
    DownloadFailed
        Network or HTTP error, timeout (``DOWNLOAD_TIMEOUT`` seconds per socket
        operation), a body over ``max_bytes``, a body shorter than its
        Content-Length, or a folder that cannot be written.
    Exception
        Whatever ``verify`` raises, unchanged.
    """
    folder = dest.parent
    top_created = None  # the outermost folder this call creates, removed again on failure
    for parent in (folder, *folder.parents):
        if parent.exists():
            break
        top_created = parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise DownloadFailed(f"cannot write to the cache folder {folder}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            digest = hashlib.sha256()
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
                    expected = response.headers.get("Content-Length")
                    received = 0
                    while chunk := response.read(1 << 16):
                        received += len(chunk)
                        if received > max_bytes:
                            raise DownloadFailed(f"{url} sent more than {max_bytes} bytes; not {what}")
                        out.write(chunk)
                        digest.update(chunk)
            except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeout, bad URL
                raise DownloadFailed(f"{url}: {exc}") from exc
        if expected is not None and received != int(expected):
            raise DownloadFailed(f"{url}: truncated, received {received} of {expected} bytes")
        sha256 = digest.hexdigest()
        if verify is not None:
            verify(tmp, sha256)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if top_created is not None:
            for created in (folder, *folder.parents):  # innermost first; stops at a non-empty one
                try:
                    created.rmdir()
                except OSError:
                    break
                if created == top_created:
                    break
        raise
    return sha256
