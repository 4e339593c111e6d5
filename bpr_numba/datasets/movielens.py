"""MovieLens: local copies or verified downloads of three releases.

Three MovieLens releases are supported:

* ``"100k"`` (``ml-100k``): the notebook's predefined splits, as COO matrices.
  Every file read is checked against the SHA-256 sums of the official archive.
* ``"1m"`` (``ml-1m``) and ``"latest-small"`` (``ml-latest-small``): every
  rating, as one :class:`~bpr_numba.data.Interactions` (their ids have gaps, so
  raw ids are mapped to indices); split them with :mod:`bpr_numba.split`.
  Their sums cannot be known offline (GroupLens publishes none, and
  latest-small changes between releases), so their structure is verified
  instead (the files present, the header, every line parsed and in range) and a
  download records the archive's SHA-256 beside it, in ``ml-1m.zip.sha256``
  (``sha256sum``'s format). A zip with such a file beside it is checked
  against it on every load, so a cached archive that changed is refused.

Files are looked up, in this order, in ``data_home``, in the folder named by
``$BPR_NUMBA_DATA`` and in the per-user cache (``$XDG_CACHE_HOME/bpr-numba``,
by default ``~/.cache/bpr-numba``). Each folder may hold the extracted folder
(``ml-1m/``) or the official zip (``ml-1m.zip``, read in place, never
extracted). Only the cache folder is ever written to (by a download; its URL
can be overridden with an environment variable, see :data:`MOVIELENS_URL_ENVS`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import numbers
import os
import re
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..data import Interactions
from ._files import (
    DATA_ENV,
    DatasetNotFoundError,
    DownloadFailed,
    cache_folder,
    check_download_flag,
    fetch,
    search_folders,
    write_atomic,
)

__all__ = [
    "DatasetNotFoundError",
    "load_movielens",
    "load_movielens_titles",
]

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ML_LATEST_SMALL_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
MOVIELENS_SPLITS = ("ua", "ub", "u1", "u2", "u3", "u4", "u5")

# SHA-256 of every file of the official ml-100k archive (ml-100k.sha256).
_ML100K_SHA256 = {
    "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.genre": "4befebdfeb3547a5cc69d937e35b45ffe55a38d75a1748889617015801387f15",
    "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
    "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
    "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
    "u2.base": "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e",
    "u2.test": "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3",
    "u3.base": "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d",
    "u3.test": "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d",
    "u4.base": "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca",
    "u4.test": "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9",
    "u5.base": "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485",
    "u5.test": "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634",
    "ua.base": "67b5bcdb380c29f85d56a012ecd88612ae020f30a6730d117a334ee8203b91f2",
    "ua.test": "d0497e202417720f57a184ec8c66be2d1afa4ff41bb53787c57b28d6bf79bc42",
    "ub.base": "237254d253b6ad7de84f919d041055428646254f34ed8f562703c899430cd881",
    "ub.test": "d54a72d05730d5892062734b2bec73e976f9b713d18c828a18b968d6cce442da",
}


@dataclass(frozen=True)
class _Release:
    """What the loaders need to know about one MovieLens archive."""

    title: str  # for messages: "MovieLens 1M"
    name: str  # the archive's top folder and file stem: ml-1m/ and ml-1m.zip
    url: str
    url_env: str  # environment variable that overrides url (tests serve a local zip)
    max_bytes: int  # a download sending more is refused
    marker: str  # a file of the release's own folder (hint: data_home is that folder itself)
    file_sums: dict | None = None  # official per-file SHA-256 sums; None: recorded on download
    format: str = ""  # "dat" (latin-1, "::"-separated, no header) or "csv" (UTF-8, a header)
    ratings: str = ""
    movies: str = ""
    rating_step: float = 1.0  # ratings lie on the grid rating_step, 2 * rating_step, ..., 5

    @property
    def archive(self):
        return f"{self.name}.zip"

    @property
    def required(self):
        """Files a downloaded archive must hold."""
        return tuple(self.file_sums) if self.file_sums is not None else (self.ratings, self.movies)

    def download_url(self):
        return os.environ.get(self.url_env) or self.url


_MOVIELENS = {
    "100k": _Release(
        "MovieLens 100k", "ml-100k", ML100K_URL, "BPR_NUMBA_ML100K_URL",
        max_bytes=64 * 2**20,  # the real archive is about 5 MB
        marker="u.data", file_sums=_ML100K_SHA256,
    ),
    "1m": _Release(
        "MovieLens 1M", "ml-1m", ML1M_URL, "BPR_NUMBA_ML1M_URL",
        max_bytes=32 * 2**20,  # the real archive is about 6 MB
        marker="ratings.dat", format="dat", ratings="ratings.dat", movies="movies.dat",
    ),
    "latest-small": _Release(
        "MovieLens latest-small", "ml-latest-small", ML_LATEST_SMALL_URL,
        "BPR_NUMBA_ML_LATEST_SMALL_URL",
        max_bytes=16 * 2**20,  # the real archive is about 1 MB
        marker="ratings.csv", format="csv", ratings="ratings.csv", movies="movies.csv",
        rating_step=0.5,
    ),
}
MOVIELENS_VARIANTS = tuple(_MOVIELENS)
#: Environment variable that overrides each variant's download URL.
MOVIELENS_URL_ENVS = {variant: release.url_env for variant, release in _MOVIELENS.items()}


# --------------------------------------------------------------------------- MovieLens


def load_movielens(variant="100k", split=None, min_rating=4, data_home=None, download=True):
    """Load MovieLens ratings as implicit feedback.

    ``"100k"`` gives the notebook's predefined train/test split as matrices;
    ``"1m"`` and ``"latest-small"`` give every rating as one
    :class:`~bpr_numba.data.Interactions`, to split with :mod:`bpr_numba.split`
    (``leave_k_out``, ``random_split``, ``time_split``).

    Parameters
    ----------
    variant : {"100k", "1m", "latest-small"}
        The release: ml-100k (100,000 ratings, 943 users, 1682 movies), ml-1m
        (1,000,209 ratings, 6040 users, 3706 rated movies) or ml-latest-small
        (about 100,000 ratings in half stars, 610 users, 9724 rated movies; it
        changes between GroupLens releases).
    split : str or None
        ``"100k"`` only: ``"ua"``, ``"ub"`` (10 ratings per user held out) or
        ``"u1"`` .. ``"u5"`` (the five-fold split); reads ``{split}.base`` and
        ``{split}.test``. ``None`` (the default) means ``"ua"``. The other
        variants have no predefined split: anything but ``None`` raises.
    min_rating : int or float, or None
        Ratings ``>= min_rating`` are positives (the others are dropped);
        ``None`` keeps every rating. From 1 to 5 for ``"100k"``, from 0 to 5
        for the others (where 0 also keeps every rating).
    data_home : str or os.PathLike, optional
        Folder holding the extracted folder (``ml-100k/``, ``ml-1m/``,
        ``ml-latest-small/``) or the official zip (``ml-1m.zip``, ...),
        searched first (then ``$BPR_NUMBA_DATA``, then the cache folder). It is
        only read.
    download : bool
        When no local copy is found, download the official archive into the
        per-user cache folder (``$XDG_CACHE_HOME/bpr-numba``) and verify it.
        The URL can be overridden with ``$BPR_NUMBA_ML100K_URL``,
        ``$BPR_NUMBA_ML1M_URL`` or ``$BPR_NUMBA_ML_LATEST_SMALL_URL``.

    Returns
    -------
    train, test : scipy.sparse.coo_matrix of float32, shape (n_users, n_items)
        For ``"100k"``. Ones at the positives, in canonical (row-major,
        sorted) order. ``n_users``/``n_items`` are the largest user/item id
        over both files plus one: ids start at 1, so row 0 and column 0 are
        empty. For ml-100k this is (944, 1683); split ``"ua"`` with
        ``min_rating=4`` has 49,906 train and 5,469 test positives.
    interactions : Interactions
        For ``"1m"`` and ``"latest-small"``. Values are the ratings (float32),
        ``timestamps`` the ratings' Unix times (int64). Rows and columns are
        the distinct raw user and movie ids of the ratings file in increasing
        order (``interactions.user_ids``, ``interactions.item_ids``), whatever
        ``min_rating``: a user or movie whose ratings are all below it keeps an
        empty row or column. ml-1m with ``min_rating=4`` is 6040 x 3706 with
        575,281 positives.

    Raises
    ------
    DatasetNotFoundError
        No local copy and no download (``download=False`` or it failed); the
        message lists every place searched.
    ValueError
        A file is damaged: it does not match its SHA-256 sum (ml-100k, or an
        archive whose sum was recorded at download), or a line does not parse
        (the message names the file and line). Or an argument is invalid.
    TypeError
        An argument has the wrong type.
    """
    release = _release(variant)
    if variant != "100k":
        if split is not None:
            raise ValueError(
                f"split applies to variant '100k' only: {release.title} has no predefined splits; "
                f"got split={split!r}. Load it with split=None and split the Interactions with "
                "bpr_numba.split (leave_k_out, random_split or time_split)."
            )
        min_rating = _check_min_rating(min_rating, low=0)
        ((where, raw),) = _read_files(release, (release.ratings,), data_home, download)
        table = _parse_ratings_file(raw, where, release)
        return Interactions.from_arrays(
            table["user"], table["item"], table["rating"], table["timestamp"],
            min_rating=min_rating if min_rating else None,
        )
    if split is None:
        split = "ua"
    if not isinstance(split, str):
        raise TypeError(
            f"split must be a str, one of {_quoted(MOVIELENS_SPLITS)}; got {type(split).__name__}."
        )
    if split not in MOVIELENS_SPLITS:
        raise ValueError(f"split must be one of {_quoted(MOVIELENS_SPLITS)}; got {split!r}.")
    min_rating = _check_min_rating(min_rating, low=1)
    names = (f"{split}.base", f"{split}.test")
    base, test = (raw for _, raw in _read_files(release, names, data_home, download))
    base, test = _parse_ratings(base), _parse_ratings(test)
    shape = (
        int(max(base[:, 0].max(), test[:, 0].max())) + 1,
        int(max(base[:, 1].max(), test[:, 1].max())) + 1,
    )
    min_rating = 1 if min_rating is None else min_rating
    return _positives(base, min_rating, shape), _positives(test, min_rating, shape)


def load_movielens_titles(variant="100k", data_home=None, download=True):
    """Return MovieLens movie titles by raw movie id.

    Parameters
    ----------
    variant : {"100k", "1m", "latest-small"}
    data_home, download
        As in :func:`load_movielens`.

    Returns
    -------
    titles : ndarray of str, shape (n_items,)
        For ``"100k"``, indexed by item id (which is the column of
        :func:`load_movielens`'s matrices): ``titles[i]`` is the title of item
        ``i`` (1683 entries); ``titles[0]`` is ``""`` since ids start at 1.
    titles : dict of int to str
        For ``"1m"`` and ``"latest-small"``, keyed by raw movie id (every movie
        of ``movies.dat``/``movies.csv``, rated or not), so the titles of an
        Interactions' columns are ``[titles[m] for m in interactions.item_ids]``.
        A dict, because latest-small's ids reach about 200,000 for 9742 movies.
    """
    release = _release(variant)
    if variant != "100k":
        ((where, raw),) = _read_files(release, (release.movies,), data_home, download)
        return _parse_movies_file(raw, where, release)
    ((_, raw),) = _read_files(release, ("u.item",), data_home, download)
    ids, titles = [], []
    for line in raw.decode("latin-1").splitlines():  # 1682 lines: not worth vectorising
        if line:
            item_id, title, _ = line.split("|", 2)
            ids.append(int(item_id))
            titles.append(title)
    out = np.full(max(ids) + 1, "", dtype=object)
    out[ids] = titles
    return out.astype(str)


def _release(variant):
    if not isinstance(variant, str):
        raise TypeError(
            f"variant must be a str, one of {_quoted(MOVIELENS_VARIANTS)}; got {type(variant).__name__}."
        )
    if variant not in _MOVIELENS:
        raise ValueError(
            f"variant must be one of {_quoted(MOVIELENS_VARIANTS)} (others are not supported yet); "
            f"got {variant!r}."
        )
    return _MOVIELENS[variant]


def _check_min_rating(min_rating, low):
    if min_rating is None:
        return None
    if isinstance(min_rating, (bool, np.bool_)) or not isinstance(min_rating, numbers.Real):
        raise TypeError(
            f"min_rating must be a number from {low} to 5, or None; got {min_rating!r} "
            f"({type(min_rating).__name__})."
        )
    if not low <= min_rating <= 5:  # also rejects NaN
        raise ValueError(
            f"min_rating must be between {low} and 5 (ratings >= min_rating are positives; None "
            f"keeps every rating); got {min_rating}."
        )
    return min_rating


def _quoted(values):
    return ", ".join(repr(v) for v in values)


def _parse_ratings(raw):
    """Parse ml-100k's tab-separated ``user item rating timestamp`` lines into an (n, 3) int64 array."""
    values = np.fromstring(raw.decode("ascii"), dtype=np.int64, sep=" ")  # any whitespace separates
    return values.reshape(-1, 4)[:, :3]


def _positives(ratings, min_rating, shape):
    keep = ratings[:, 2] >= min_rating
    matrix = sp.coo_matrix(
        (
            np.ones(int(keep.sum()), dtype=np.float32),
            (ratings[keep, 0].astype(np.int32), ratings[keep, 1].astype(np.int32)),
        ),
        shape=shape,
    )
    matrix.sum_duplicates()  # sorts row-major; ml-100k has no repeated (user, item)
    matrix.data[:] = 1.0
    return matrix


# ---------------------------------------------------------------- parsing ml-1m and latest-small

_RATINGS_DTYPE = np.dtype(
    [("user", np.int64), ("item", np.int64), ("rating", np.float64), ("timestamp", np.int64)]
)
_CSV_RATINGS_HEADER = "userId,movieId,rating,timestamp"
_DAT_RATINGS_LAYOUT = "UserID::MovieID::Rating::Timestamp"
_CSV_MOVIES_HEADER = ["movieId", "title", "genres"]


def _parse_ratings_file(raw, where, release):
    """Every rating of ``ratings.dat`` or ``ratings.csv`` as a structured array.

    Returns an ndarray of dtype ``_RATINGS_DTYPE`` (fields user, item, rating,
    timestamp), one entry per line, in file order. The whole file goes through
    ``np.loadtxt``'s C parser; only when a line fails does a Python pass look
    for the first bad one, so that the ValueError names the file (``where``)
    and the line. Ids must be positive, timestamps non-negative and ratings
    on the release's grid (whole stars 1-5 for ml-1m, half stars 0.5-5 for
    latest-small).
    """
    is_csv = release.format == "csv"
    layout = _CSV_RATINGS_HEADER if is_csv else _DAT_RATINGS_LAYOUT
    separator = "," if is_csv else "::"
    # ASCII is expected; latin-1 decodes any byte, and a stray one then fails to parse at its line.
    text = raw.decode("latin-1").replace("\r\n", "\n")
    first_line = 1
    if is_csv:
        header, _, text = text.partition("\n")
        if header != _CSV_RATINGS_HEADER:
            raise ValueError(
                f"{where}, line 1: expected the header {_CSV_RATINGS_HEADER!r}; got {header[:100]!r}."
            )
        first_line = 2
    if text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise ValueError(f"{where} holds no ratings (expected lines of {layout}).")
    n_lines = text.count("\n") + 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": caught below
            table = np.loadtxt(
                io.StringIO(text if is_csv else text.replace("::", "\t")), dtype=_RATINGS_DTYPE,
                delimiter="," if is_csv else "\t", comments=None, ndmin=1,
            )
        problem = None
    except ValueError as exc:
        table, problem = None, str(exc)
    if table is None or table.shape[0] != n_lines:  # loadtxt skips blank lines: find them too
        bad = _first_unparsable_line(text, separator)
        if bad is None:  # the two parsers disagree: report loadtxt's own words
            raise ValueError(f"{where}: not lines of {layout} ({problem or 'blank lines'}).")
        index, reason = bad
        raise ValueError(
            f"{where}, line {first_line + index}: expected {layout}, got "
            f"{_line_at(text, index)[:100]!r} ({reason})."
        )
    step = release.rating_step
    rating = table["rating"]
    checks = (
        (table["user"] >= 1, "user ids must be positive"),
        (table["item"] >= 1, "movie ids must be positive"),
        ((rating >= step) & (rating <= 5) & (rating / step == np.round(rating / step)),
         f"ratings must be {'half' if step == 0.5 else 'whole'} stars from {step:g} to 5"),
        (table["timestamp"] >= 0, "timestamps must be non-negative"),
    )
    for ok, rule in checks:
        if not ok.all():
            index = int(np.argmin(ok))
            raise ValueError(
                f"{where}, line {first_line + index}: {rule}; got {_line_at(text, index)[:100]!r}."
            )
    return table


def _first_unparsable_line(text, separator):
    """``(index, reason)`` of the first line that is not 4 numbers (int, int, float, int), or None.

    A Python loop, run only on the error path to name the bad line.
    """
    for index, line in enumerate(text.split("\n")):
        fields = line.split(separator)
        if len(fields) != 4:
            return index, f"{len(fields)} field{'s' if len(fields) != 1 else ''} instead of 4"
        for field, kind in zip(fields, (int, int, float, int)):
            try:
                kind(field)
            except ValueError:
                return index, f"{field!r} is not {'an integer' if kind is int else 'a number'}"
    return None


def _line_at(text, index):
    return text.split("\n")[index]


def _parse_movies_file(raw, where, release):
    """``{movie id: title}`` from ``movies.dat`` (latin-1, ``MovieID::Title::Genres``) or
    ``movies.csv`` (UTF-8, a header, titles with commas in double quotes).

    A few thousand lines: parsed line by line, each checked; a bad one raises
    a ValueError naming the file (``where``) and the line.
    """
    titles, line_of = {}, {}
    if release.format == "csv":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ValueError(f"{where}, line {line}: not UTF-8 text ({exc.reason}).") from exc
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        rows = _csv_rows(reader, where)
        line, header = next(rows, (1, None))
        if header != _CSV_MOVIES_HEADER:
            raise ValueError(
                f"{where}, line 1: expected the header {','.join(_CSV_MOVIES_HEADER)!r}; got {header!r}."
            )
        layout = "movieId,title,genres"
    else:
        text = raw.decode("latin-1").replace("\r\n", "\n")
        if text.endswith("\n"):
            text = text[:-1]
        # split("\n"), not splitlines(): latin-1 text may hold \x85, which splitlines() breaks at.
        rows = ((number, line.split("::")) for number, line in enumerate(text.split("\n"), start=1))
        layout = "MovieID::Title::Genres"
    for line, fields in rows:
        if len(fields) != 3 or not re.fullmatch(r"[0-9]+", fields[0]) or int(fields[0]) < 1:
            shown = "::".join(fields) if release.format == "dat" else fields
            raise ValueError(f"{where}, line {line}: expected {layout} with a positive id; got {shown!r}.")
        movie = int(fields[0])
        if movie in titles:
            raise ValueError(
                f"{where}, line {line}: movie id {movie} appears again (first on line {line_of[movie]})."
            )
        titles[movie], line_of[movie] = fields[1], line
    if not titles:
        raise ValueError(f"{where} holds no movies (expected lines of {layout}).")
    return titles


def _csv_rows(reader, where):
    """``(line number, row)`` pairs of a csv.reader; csv.Error becomes ValueError with the line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ValueError(f"{where}, line {reader.line_num}: {exc}.") from exc
        yield reader.line_num, row


# ---------------------------------------------------------------- finding, reading, downloading


def _find_in(release, label, folder, names, notes):
    """Return ``folder/<name>`` or ``folder/<name>.zip`` if it holds every file in ``names``.

    Otherwise return None and append to ``notes`` what was found there.
    """
    extracted, archive = folder / release.name, folder / release.archive
    if extracted.is_dir():
        missing = [n for n in names if not (extracted / n).is_file()]
        if not missing:
            return extracted
        notes.append(f"{label}: {extracted}/ lacks {', '.join(missing)}")
    if archive.is_file():
        try:
            with zipfile.ZipFile(archive) as zf:
                members = set(zf.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(
                f"{archive} is not a readable zip archive ({exc}); delete it and load again "
                "(download=True fetches a fresh copy into the cache)."
            ) from exc
        missing = [f"{release.name}/{n}" for n in names if f"{release.name}/{n}" not in members]
        if not missing:
            return archive
        notes.append(f"{label}: {archive} lacks {', '.join(missing)}")
    if not extracted.is_dir() and not archive.is_file():
        itself = (folder / release.marker).exists()
        hint = f" (it looks like {release.name} itself: pass its parent folder)" if itself else ""
        notes.append(f"{label}: {folder} holds no {release.name}/ nor {release.archive}{hint}")
    return None


def _read_files(release, names, data_home, download):
    """Return ``[(where, bytes)]`` for each file in ``names``, from the first copy found.

    Downloads the archive into the cache when no copy is found (and
    ``download``). ml-100k files are checked against their official sums;
    ``where`` describes each file's origin for error messages.
    """
    check_download_flag(download)
    notes = []
    source = None
    for label, folder in search_folders(data_home):
        if folder is None:
            notes.append(f"{label}: not set")
            continue
        source = _find_in(release, label, folder, names, notes)
        if source is not None:
            break
    if source is None:
        cache = cache_folder()
        reason = "download=False"
        if download:
            try:
                source = _download(release, cache)
            except DownloadFailed as exc:
                reason = f"the download failed: {exc}"
        if source is None:
            places = "\n".join(f"  - {note}" for note in notes)
            raise DatasetNotFoundError(
                f"{release.title} ({', '.join(names)}) not found. Looked in:\n{places}\n"
                f"and did not download it ({reason}). To use local files, pass "
                f"data_home='/path/to/folder' or set {DATA_ENV}=/path/to/folder, where the folder "
                f"holds {release.name}/ or {release.archive} (from {release.url}); with network "
                f"access, download=True caches it in {cache} (${release.url_env} overrides the URL)."
            )
    contents = _read_from(release, source, names)
    if release.file_sums is not None:
        for name, (where, raw) in zip(names, contents):
            _check_file_sum(release, name, where, hashlib.sha256(raw).hexdigest())
    return contents


def _read_from(release, source, names):
    """``[(where, bytes)]`` of ``names`` in a folder or zip; a zip's recorded sum is checked first."""
    if source.suffix != ".zip":
        return [(str(source / n), (source / n).read_bytes()) for n in names]
    data = source.read_bytes()  # at most a few MB; read once, so the sum covers what is parsed
    _check_recorded_sum(source, hashlib.sha256(data).hexdigest())
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [(f"{release.name}/{n} in {source}", zf.read(f"{release.name}/{n}")) for n in names]
    except (zipfile.BadZipFile, OSError, KeyError) as exc:  # includes a member's CRC error
        raise ValueError(
            f"{source} is damaged ({exc}); delete it and load again "
            "(download=True fetches a fresh copy into the cache)."
        ) from exc


def _sum_file(archive):
    """Where the SHA-256 of a downloaded archive is recorded: ``ml-1m.zip.sha256`` beside it."""
    return archive.with_name(archive.name + ".sha256")


def _check_recorded_sum(archive, actual):
    """If a sum was recorded beside ``archive`` (at download), check ``actual`` against it."""
    record = _sum_file(archive)
    if not record.is_file():
        return
    fields = record.read_text(encoding="latin-1").split()
    recorded = fields[0].lower() if fields else ""
    if not re.fullmatch(r"[0-9a-f]{64}", recorded):
        raise ValueError(
            f"{record} does not hold a SHA-256 sum (64 hex digits). Delete {archive} and {record}, "
            "then load again (download=True fetches a fresh copy into the cache)."
        )
    if actual != recorded:
        raise ValueError(
            f"{archive} has changed since it was downloaded: its SHA-256 is {actual}, but {record} "
            f"recorded {recorded}. Delete {archive} and {record}, then load again (download=True "
            "fetches a fresh copy into the cache)."
        )


def _check_file_sum(release, name, where, actual, remedy=None):
    expected = release.file_sums[name]
    if actual != expected:
        if remedy is None:
            remedy = (
                f"Delete this copy and load again with download=True (it fetches {release.url} into "
                "the cache), or replace the file with the one from the official archive."
            )
        raise ValueError(
            f"MovieLens file {name} ({where}) is damaged or not the official one: SHA-256 checksum "
            f"mismatch, expected {expected}, got {actual}. {remedy}"
        )


def _download(release, cache):
    """Download the archive into ``cache``, verified, atomically; return its path.

    The archive is renamed into place only after it was verified (ml-100k:
    every member's official sum; the others: their structure, and the
    archive's SHA-256 is then recorded beside it), so a failed download leaves
    nothing behind (see :func:`fetch`).
    """
    url = release.download_url()
    archive = cache / release.archive

    def verify(tmp, sha256):
        _verify_download(release, tmp, url)
        if release.file_sums is None:  # record the sum, so later loads notice a changed archive
            write_atomic(_sum_file(archive), f"{sha256}  {release.archive}\n".encode("ascii"))

    fetch(url, archive, max_bytes=release.max_bytes, what=f"the {release.name} archive", verify=verify)
    return archive


def _verify_download(release, path, url):
    """Check that the zip at ``path`` holds the release's files, each verified.

    ml-100k: every member against its official SHA-256 sum. The others: the
    ratings and movies files parse completely (see :func:`_parse_ratings_file`).
    Raises DownloadFailed (not a zip, members missing) or ValueError (a member
    does not verify).
    """
    remedy = f"Nothing was saved; check the URL (${release.url_env}) or use a local copy."
    try:
        with zipfile.ZipFile(path) as zf:
            members = set(zf.namelist())
            missing = [n for n in release.required if f"{release.name}/{n}" not in members]
            if missing:
                raise DownloadFailed(
                    f"{url} is not the {release.name} archive: it lacks {', '.join(missing)}"
                )
            for name in release.required:
                where = f"{release.name}/{name} downloaded from {url}"
                if release.file_sums is not None:
                    digest = hashlib.sha256()
                    with zf.open(f"{release.name}/{name}") as member:
                        while block := member.read(1 << 20):
                            digest.update(block)
                    _check_file_sum(release, name, where, digest.hexdigest(), remedy=remedy)
                    continue
                raw = zf.read(f"{release.name}/{name}")
                parse = _parse_ratings_file if name == release.ratings else _parse_movies_file
                try:
                    parse(raw, where, release)
                except ValueError as exc:
                    raise ValueError(f"{exc} {remedy}") from exc
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DownloadFailed(f"{url} did not send a valid zip archive (truncated?): {exc}") from exc
