"""Splits published with papers: the ``user item item ...`` format, and Gowalla.

NGCF, LightGCN, KGAT and many later papers publish their train/test splits as
text files with one line per user: the user id, then the ids of the user's
items, separated by spaces, ids 0-based, no header. :func:`read_split_file`
reads any such file into a CSR matrix; :func:`load_gowalla` finds (or
downloads) and verifies the Gowalla split of NGCF and LightGCN.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from .._sparse import ones_csr
from .._validation import check_positive_int
from ._files import (
    DATA_ENV,
    DatasetNotFoundError,
    DownloadFailed,
    cache_folder,
    check_download_flag,
    fetch,
    search_folders,
)

__all__ = ["GOWALLA_SHAPE", "GOWALLA_URL", "GOWALLA_URL_ENV", "load_gowalla", "read_split_file"]

#: Folder the Gowalla files are downloaded from (``GOWALLA_URL + "train.txt"``).
GOWALLA_URL = "https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/gowalla/"
#: Environment variable that overrides :data:`GOWALLA_URL`.
GOWALLA_URL_ENV = "BPR_NUMBA_GOWALLA_URL"
#: (n_users, n_items) of the published split (ids 0-based, every id used).
GOWALLA_SHAPE = (29858, 40981)

# SHA-256 of the published files (those of the NGCF and LightGCN repositories).
_GOWALLA_SHA256 = {
    "train.txt": "7244696fdeb23911319cf7b689f2e15a3c4c92549c873a5677b44e3f13cc3e62",
    "test.txt": "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
}
_GOWALLA_MAX_BYTES = 64 * 2**20  # per file; train.txt is about 4.6 MB
_MAX_ID = 2**31 - 2  # ids index int32 arrays, and n = max id + 1 must fit too
_SPACE = b" \t\r"  # separators within a line (\r: CRLF files read the same)


# --------------------------------------------------------------------------- the file format


def read_split_file(path, n_users=None, n_items=None):
    """Read a ``user item item ...`` split file into a users x items CSR matrix.

    Each non-blank line is a user id followed by the ids of that user's items,
    separated by spaces or tabs. A line with a user id and no items gives an
    empty row; blank lines are skipped. Users need not be in order, and users
    without a line get empty rows.

    Parameters
    ----------
    path : str or os.PathLike
    n_users, n_items : int >= 1, optional
        The matrix's shape. Default: the largest user (item) id of the file
        plus one, so pass both to read a train and a test file of one split
        into the same shape. Ids at or past a given size are an error.

    Returns
    -------
    scipy.sparse.csr_matrix of float32, shape (n_users, n_items)
        Ones at the (user, item) pairs; int32 ``indptr`` and sorted int32
        ``indices``. An item repeated on a user's line is merged into one
        entry (still 1), so ``nnz`` can be smaller than the number of item
        ids in the file.

    Raises
    ------
    ValueError
        A token is not a non-negative integer (a negative id, ``1.5``, ``x``),
        an id is too large (past 2**31 - 2, or at or past the given
        ``n_users``/``n_items``), or a user id starts two lines. The message
        names the file, the 1-based line number and the offending text; when
        a file holds several problems, the first line's is reported.
    TypeError
        ``path``, ``n_users`` or ``n_items`` has the wrong type.
    OSError
        The file cannot be read.

    Notes
    -----
    The whole file is parsed with NumPy on its bytes (no Python loop per line
    or per id): Gowalla's train.txt (4.6 MB, 29,858 lines, 810,128 items)
    reads in well under a second.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike file name; got {type(path).__name__}.")
    if n_users is not None:
        n_users = check_positive_int(n_users, "n_users")
    if n_items is not None:
        n_items = check_positive_int(n_items, "n_items")
    return _parse_split(Path(path).read_bytes(), os.fspath(path), n_users, n_items)


def _parse_split(raw, where, n_users, n_items):
    """The CSR matrix of a split file's bytes ``raw``; ``where`` names the file in errors."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    is_digit = (buf >= ord("0")) & (buf <= ord("9"))
    is_newline = buf == ord("\n")
    is_bad = ~(is_digit | is_newline)
    for byte in _SPACE:
        is_bad &= buf != byte
    newlines = np.flatnonzero(is_newline)
    edges = np.diff(is_digit.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)  # tokens: maximal runs of digits
    ends = np.flatnonzero(edges == -1)
    bad_line = None  # 0-based index of the first line holding a byte that is no digit or space
    if is_bad.any():
        bad_line = int(np.searchsorted(newlines, np.argmax(is_bad)))
        # Tokens of the lines before it parse as usual, so that an earlier problem is reported first.
        keep = starts < (newlines[bad_line - 1] if bad_line else 0)
        starts, ends = starts[keep], ends[keep]
    lengths = ends - starts
    values = np.zeros(starts.size, dtype=np.int64)
    too_long = lengths > 18  # past int64; certainly past _MAX_ID
    for k in range(int(lengths.max(initial=0))):  # digit k of every token that has one
        has = np.flatnonzero((lengths > k) & ~too_long)
        values[has] = values[has] * 10 + (buf[starts[has] + k] - ord("0"))
    values[too_long] = _MAX_ID + 1
    line = np.searchsorted(newlines, starts)  # 0-based line of each token
    first = np.ones(starts.size, dtype=bool)  # the first token of its line: the user
    first[1:] = line[1:] != line[:-1]
    users, user_line = values[first], line[first]
    owner = np.cumsum(first) - 1  # index into users of each token's line
    is_item = ~first
    items, rows = values[is_item], users[owner[is_item]]

    problems = []  # (0-based line, message); the first line's is raised

    def token_text(index):
        return raw[starts[index]:ends[index]].decode("ascii")

    for what, ids, is_what, n in (("user", users, first, n_users), ("item", items, is_item, n_items)):
        if n is None or n - 1 > _MAX_ID:
            limit, rule = _MAX_ID, f"ids must be at most {_MAX_ID}"
        else:
            limit, rule = n - 1, f"n_{what}s={n} (valid ids: 0..{n - 1})"
        over = np.flatnonzero(ids > limit)
        if over.size:
            index = np.flatnonzero(is_what)[over[0]]  # the first such token in file order
            problems.append((int(line[index]), f"{what} id {token_text(index)} is out of range: {rule}"))
    order = np.argsort(users, kind="stable")
    repeat = np.flatnonzero(users[order][1:] == users[order][:-1]) + 1
    if repeat.size:
        again = order[repeat]  # later lines of a repeated user (stable: file order within a user)
        second = int(again[np.argmin(user_line[again])])
        first_time = int(np.argmax(users == users[second]))
        problems.append((int(user_line[second]),
                         f"user id {users[second]} starts a second line (first on line "
                         f"{user_line[first_time] + 1}); a user's items must be on one line"))
    if bad_line is not None:
        problems.append((bad_line, _bad_token(raw, newlines, bad_line)))
    if problems:
        index, message = min(problems, key=lambda problem: problem[0])
        raise ValueError(f"{where}, line {index + 1}: {message}; the line is {_line_text(raw, newlines, index)!r}.")

    n_users = int(users.max(initial=-1)) + 1 if n_users is None else n_users
    n_items = int(items.max(initial=-1)) + 1 if n_items is None else n_items
    keys = np.sort(rows * max(n_items, 1) + items)  # by (user, item); np.unique's hashing is slower
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else keys  # repeats merged
    row_of_key = keys // max(n_items, 1)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of_key, minlength=n_users), out=indptr[1:])
    return ones_csr(indptr, keys - row_of_key * n_items, (n_users, n_items))


def _line_text(raw, newlines, index, limit=100):
    """Line ``index`` (0-based) of ``raw``, decoded for a message and cut at ``limit`` characters."""
    start = int(newlines[index - 1]) + 1 if index else 0
    stop = int(newlines[index]) if index < newlines.size else len(raw)
    text = raw[start:stop].rstrip(b"\r").decode("utf-8", errors="backslashreplace")
    return text if len(text) <= limit else text[:limit] + "..."


def _bad_token(raw, newlines, index):
    """Why line ``index`` does not parse: its first token that is not a non-negative integer.

    Runs on the error path only, on one line.
    """
    start = int(newlines[index - 1]) + 1 if index else 0
    stop = int(newlines[index]) if index < newlines.size else len(raw)
    tokens = [t for t in re.split(rb"[ \t\r]+", raw[start:stop]) if t]
    for position, token in enumerate(tokens):
        if not re.fullmatch(rb"[0-9]+", token):
            what = "user" if position == 0 else "item"
            text = token.decode("utf-8", errors="backslashreplace")
            if re.fullmatch(rb"-[0-9]+", token):
                return f"{what} id {text} is negative (ids must be non-negative integers)"
            return f"{what} id {text!r} is not a non-negative integer"
    return "it holds a character that is not a digit or a space"  # unreachable: a token is bad


# --------------------------------------------------------------------------- Gowalla


def load_gowalla(data_home=None, download=True):
    """Load the Gowalla check-in split of NGCF and LightGCN.

    The split as those papers published it: 29,858 users and 40,981 items
    (check-in locations, 10-core filtered), 810,128 train and 217,242 test
    interactions, disjoint. Files are looked up like MovieLens: a
    ``gowalla/`` folder holding ``train.txt`` and ``test.txt`` in
    ``data_home``, then in ``$BPR_NUMBA_DATA``, then in the per-user cache
    (``$XDG_CACHE_HOME/bpr-numba``). Every file read is checked against the
    published file's SHA-256 sum.

    Parameters
    ----------
    data_home : str or os.PathLike, optional
        Folder holding ``gowalla/`` (only read).
    download : bool
        When no local copy is found, download the files from
        :data:`GOWALLA_URL` (``$BPR_NUMBA_GOWALLA_URL`` overrides it: a folder
        URL, the file names are appended) into the cache's ``gowalla/``,
        each verified before it is saved.

    Returns
    -------
    train, test : scipy.sparse.csr_matrix of float32, shape (29858, 40981)
        Ones at the interactions (see :func:`read_split_file`).

    Raises
    ------
    DatasetNotFoundError
        No local copy and no download (``download=False`` or it failed); the
        message lists every place searched.
    ValueError
        A file does not match its published SHA-256 sum (a downloaded one is
        then not kept), or does not parse.
    """
    check_download_flag(download)
    folder = _find_gowalla(data_home, download)
    matrices = []
    for name in ("train.txt", "test.txt"):
        path = folder / name
        raw = path.read_bytes()  # read once, so the sum covers what is parsed
        actual = hashlib.sha256(raw).hexdigest()
        if actual != _GOWALLA_SHA256[name]:
            raise ValueError(
                f"Gowalla file {name} ({path}) is damaged or not the published one: SHA-256 "
                f"checksum mismatch, expected {_GOWALLA_SHA256[name]}, got {actual}. Delete it and "
                f"load again with download=True (it fetches {_gowalla_url()} into the cache), or "
                "replace it with the file of the NGCF or LightGCN repository."
            )
        matrices.append(_parse_split(raw, str(path), *GOWALLA_SHAPE))
    return tuple(matrices)


def _gowalla_url():
    base = os.environ.get(GOWALLA_URL_ENV) or GOWALLA_URL
    return base if base.endswith("/") else base + "/"


def _find_gowalla(data_home, download):
    """The first ``gowalla/`` folder holding both files, downloading into the cache if needed."""
    names = tuple(_GOWALLA_SHA256)
    notes = []
    for label, place in search_folders(data_home):
        if place is None:
            notes.append(f"{label}: not set")
            continue
        folder = place / "gowalla"
        if folder.is_dir():
            missing = [name for name in names if not (folder / name).is_file()]
            if not missing:
                return folder
            notes.append(f"{label}: {folder}/ lacks {', '.join(missing)}")
        else:
            itself = (place / "train.txt").is_file()
            hint = " (it looks like gowalla itself: pass its parent folder)" if itself else ""
            notes.append(f"{label}: {place} holds no gowalla/{hint}")
    cache = cache_folder() / "gowalla"
    reason = "download=False"
    if download:
        try:
            for name in names:
                if not (cache / name).is_file():
                    _download(name, cache / name)
            return cache
        except DownloadFailed as exc:
            reason = f"the download failed: {exc}"
    places = "\n".join(f"  - {note}" for note in notes)
    raise DatasetNotFoundError(
        f"Gowalla ({', '.join(names)}) not found. Looked in:\n{places}\nand did not download it "
        f"({reason}). To use local files, pass data_home='/path/to/folder' or set "
        f"{DATA_ENV}=/path/to/folder, where the folder holds gowalla/train.txt and "
        f"gowalla/test.txt (from {GOWALLA_URL}); with network access, download=True caches them "
        f"in {cache} (${GOWALLA_URL_ENV} overrides the URL)."
    )


def _download(name, dest):
    """Fetch one Gowalla file into ``dest``, kept only if its SHA-256 is the published one."""
    url = _gowalla_url() + name

    def verify(tmp, sha256):
        if sha256 != _GOWALLA_SHA256[name]:
            raise ValueError(
                f"Gowalla file {name} downloaded from {url} is not the published one: SHA-256 "
                f"checksum mismatch, expected {_GOWALLA_SHA256[name]}, got {sha256}. Nothing was "
                f"saved; check the URL (${GOWALLA_URL_ENV}) or use a local copy."
            )

    fetch(url, dest, max_bytes=_GOWALLA_MAX_BYTES, what=f"Gowalla's {name}", verify=verify)
