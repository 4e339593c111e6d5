"""Save and load models: one ``.npz`` with a JSON header, never pickle.

Layout (``FORMAT_VERSION`` 2; version 1 files, without raw ids, still load):

- ``format`` : the string ``"bpr-numba"`` (tells our files from others);
- ``format_version`` : int64 scalar;
- ``header`` : JSON text with the estimator parameters, the shapes and
  ``n_epochs_done`` and ``history``;
- ``user_factors``, ``item_factors`` : float32 arrays;
- ``user_ids``, ``item_ids`` (optional) : the raw ids of a model fitted on
  ``Interactions``, as int64 or unicode arrays (no pickle).

Writes to a path are atomic: a temporary file in the target folder, flushed
and synced, then renamed over the target, so a failed save never damages an
existing file. A file object (anything with ``write``, e.g. ``io.BytesIO`` or
an open file) is written to directly, from its current position, and left
open; loading reads a file object from its current position.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT_NAME = "bpr-numba"
FORMAT_VERSION = 2
_OPTIONAL = ("user_ids", "item_ids")
_REQUIRED = ("format", "format_version", "header", "user_factors", "item_factors")


def save_arrays(path, params, user_factors, item_factors, extra=None, arrays=None):
    """Write a model file atomically.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        Target file; ``.npz`` is not appended. A file object is written to
        directly (not atomically) and left open.
    params : dict
        JSON-serialisable estimator parameters.
    user_factors, item_factors : ndarray of float32
    extra : dict, optional
        More JSON-serialisable header entries.
    arrays : dict, optional
        Optional arrays by name (``user_ids``, ``item_ids``); int or unicode.
    """
    header = {"params": params, "user_shape": list(user_factors.shape),
              "item_shape": list(item_factors.shape)}
    header.update(extra or {})
    text = json.dumps(header)
    entries = dict(format=np.array(FORMAT_NAME), format_version=np.int64(FORMAT_VERSION),
                   header=np.array(text), user_factors=user_factors, item_factors=item_factors,
                   **{k: a for k, a in (arrays or {}).items() if k in _OPTIONAL})
    if is_file_object(path, "write"):
        np.savez(path, **entries)
        return
    with atomic_file(path) as fh:
        np.savez(fh, **entries)


def _umask():
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path, suffix=".tmp"):
    """Write ``path`` atomically: yields a binary file open on a temporary file beside it.

    When the block ends normally the file is flushed, synced to disk and
    renamed over ``path`` (``os.replace``), so readers see the old file or the
    whole new one, never a part; when it raises (Ctrl-C included) the
    temporary file is removed and ``path`` is untouched. The one way this
    package writes its files (models, downloads' checksums, Dask outputs).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            # mkstemp makes the file owner-only; give it the mode open() would.
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def is_file_object(target, method):
    """Whether ``target`` is a file object (has ``method``, "read" or "write"), not a path."""
    return not isinstance(target, (str, os.PathLike)) and callable(getattr(target, method, None))


def describe(target):
    """How messages name ``target``: the path, or the file object's name."""
    if is_file_object(target, "read") or is_file_object(target, "write"):
        name = getattr(target, "name", None)
        return f"the file object {name!r}" if isinstance(name, str) else \
            f"the file object {type(target).__name__}"
    return str(target)


def load_arrays(path):
    """Read and check a model file (a path, or a binary file object read from its position).

    Returns
    -------
    header : dict
    user_factors, item_factors : ndarray of float32
    arrays : dict
        The optional arrays present (``user_ids``, ``item_ids``).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not a bpr-numba model file, truncated or damaged, a newer format
        version, a missing entry, or arrays that do not match the header.
    """
    if is_file_object(path, "read"):
        source, path = path, describe(path)
    else:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no model file at {path}")
        source = path
    try:
        loaded = np.load(source, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(
                f"{path} holds a single NumPy array (.npy), not a bpr-numba model file; "
                "expected a file written by BPR.save()."
            )
        with loaded as npz:
            missing = [key for key in _REQUIRED if key not in npz.files]
            if "format" in npz.files and str(npz["format"]) != FORMAT_NAME:
                missing = ["format"]
            if missing and ("format" in missing or "format_version" in missing):
                raise ValueError(
                    f"{path} is not a bpr-numba model file (no {missing[0]!r} entry); "
                    "expected a file written by BPR.save()."
                )
            version = int(npz["format_version"])
            if version > FORMAT_VERSION:
                raise ValueError(
                    f"{path} has model format version {version}, newer than this bpr-numba "
                    f"reads (up to {FORMAT_VERSION}); upgrade bpr-numba to load it."
                )
            if missing:
                raise ValueError(
                    f"{path} is damaged: the entries {missing} are missing from the model file."
                )
            header = json.loads(str(npz["header"]))
            users = npz["user_factors"]
            items = npz["item_factors"]
            arrays = {}
            for key in _OPTIONAL:
                if key in npz.files:
                    array = npz[key]
                    if array.ndim != 1 or array.dtype.kind not in "iU":
                        raise ValueError(
                            f"{path} is damaged: {key} has dtype {array.dtype} and shape "
                            f"{array.shape}, expected a 1-D int or str array."
                        )
                    arrays[key] = array
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, json.JSONDecodeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(
            f"{path} is not a readable bpr-numba model file (truncated or damaged: {exc})."
        ) from exc
    except ValueError as exc:
        if "bpr-numba" in str(exc) or "damaged" in str(exc):
            raise
        raise ValueError(
            f"{path} is not a readable bpr-numba model file (truncated or damaged: {exc})."
        ) from exc
    for name, array, key in (("user_factors", users, "user_shape"),
                             ("item_factors", items, "item_shape")):
        if array.dtype != np.float32 or list(array.shape) != header.get(key):
            raise ValueError(
                f"{path} is damaged: {name} has dtype {array.dtype} and shape {array.shape}, "
                f"the header says float32 and {tuple(header.get(key) or ())}."
            )
    return header, users, items, arrays
