"""Datasets: MovieLens 100k (local copy or verified download) and seeded synthetic data.

MovieLens files are looked up, in this order, in ``data_home``, in the folder
named by ``$BPR_NUMBA_DATA`` and in the per-user cache
(``$XDG_CACHE_HOME/bpr-numba``, by default ``~/.cache/bpr-numba``). Each folder
may hold the extracted ``ml-100k/`` folder or the official ``ml-100k.zip``
(read in place, never extracted). Every file read is checked against the
SHA-256 sums of the official archive, so a damaged copy is never used. Only
the cache folder is ever written to (by a download).
"""

from __future__ import annotations

import hashlib
import http.client
import numbers
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ._rng import as_seed_sequence
from ._validation import check_float, check_interactions, check_positive_int

__all__ = [
    "DatasetNotFoundError",
    "holdout_split",
    "load_movielens",
    "load_movielens_titles",
    "make_synthetic",
]

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
URL_ENV = "BPR_NUMBA_ML100K_URL"
DATA_ENV = "BPR_NUMBA_DATA"
MOVIELENS_VARIANTS = ("100k",)
MOVIELENS_SPLITS = ("ua", "ub", "u1", "u2", "u3", "u4", "u5")

_DOWNLOAD_TIMEOUT = 60.0  # seconds, per connect / read on the socket
_MAX_DOWNLOAD_BYTES = 64 * 2**20  # the real archive is about 5 MB

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


class DatasetNotFoundError(FileNotFoundError):
    """No usable local copy of a dataset, and it could not be downloaded."""


# --------------------------------------------------------------------------- MovieLens


def load_movielens(variant="100k", split="ua", min_rating=4, data_home=None, download=True):
    """Load a MovieLens split as implicit feedback, as the 2016 Keras triplet notebook did.

    Parameters
    ----------
    variant : str
        Only ``"100k"`` for now.
    split : str
        One of ``"ua"``, ``"ub"`` (10 ratings per user held out) or ``"u1"`` .. ``"u5"``
        (the five-fold split); reads ``{split}.base`` and ``{split}.test``.
    min_rating : int or float, 1 to 5
        Ratings ``>= min_rating`` are positives; lower ratings are dropped.
    data_home : str or os.PathLike, optional
        Folder holding ``ml-100k/`` or ``ml-100k.zip``, searched first (then
        ``$BPR_NUMBA_DATA``, then the cache folder). It is only read.
    download : bool
        When no local copy is found, download the official archive into the
        per-user cache folder (``$XDG_CACHE_HOME/bpr-numba``) and verify it.
        The URL can be overridden with ``$BPR_NUMBA_ML100K_URL``.

    Returns
    -------
    train, test : scipy.sparse.coo_matrix of float32, shape (n_users, n_items)
        Ones at the positives, in canonical (row-major, sorted) order.
        ``n_users``/``n_items`` are the largest user/item id over both files
        plus one: ids start at 1, so row 0 and column 0 are empty. For ml-100k
        this is (944, 1683); split ``"ua"`` with ``min_rating=4`` has 49,906
        train and 5,469 test positives.

    Raises
    ------
    DatasetNotFoundError
        No local copy and no download (``download=False`` or it failed); the
        message lists every place searched.
    ValueError
        A file does not match its SHA-256 sum, or an argument is invalid.
    TypeError
        An argument has the wrong type.
    """
    _check_variant(variant)
    if not isinstance(split, str):
        raise TypeError(
            f"split must be a str, one of {_quoted(MOVIELENS_SPLITS)}; got {type(split).__name__}."
        )
    if split not in MOVIELENS_SPLITS:
        raise ValueError(f"split must be one of {_quoted(MOVIELENS_SPLITS)}; got {split!r}.")
    if isinstance(min_rating, (bool, np.bool_)) or not isinstance(min_rating, numbers.Real):
        raise TypeError(
            f"min_rating must be a number from 1 to 5; got {min_rating!r} ({type(min_rating).__name__})."
        )
    if not 1 <= min_rating <= 5:  # also rejects NaN
        raise ValueError(
            f"min_rating must be between 1 and 5 (ratings >= min_rating are positives); got {min_rating}."
        )
    names = (f"{split}.base", f"{split}.test")
    base, test = _read_ml100k(names, data_home, download)
    base, test = _parse_ratings(base), _parse_ratings(test)
    shape = (
        int(max(base[:, 0].max(), test[:, 0].max())) + 1,
        int(max(base[:, 1].max(), test[:, 1].max())) + 1,
    )
    return _positives(base, min_rating, shape), _positives(test, min_rating, shape)


def load_movielens_titles(data_home=None, download=True):
    """Return MovieLens 100k movie titles indexed by item id.

    Parameters
    ----------
    data_home, download
        As in :func:`load_movielens`.

    Returns
    -------
    ndarray of str, shape (n_items,)
        ``titles[i]`` is the title of item ``i`` (1683 entries for ml-100k);
        ``titles[0]`` is ``""`` since ids start at 1.
    """
    (raw,) = _read_ml100k(("u.item",), data_home, download)
    ids, titles = [], []
    for line in raw.decode("latin-1").splitlines():  # 1682 lines: not worth vectorising
        if line:
            item_id, title, _ = line.split("|", 2)
            ids.append(int(item_id))
            titles.append(title)
    out = np.full(max(ids) + 1, "", dtype=object)
    out[ids] = titles
    return out.astype(str)


def _check_variant(variant):
    if not isinstance(variant, str):
        raise TypeError(
            f"variant must be a str, one of {_quoted(MOVIELENS_VARIANTS)}; got {type(variant).__name__}."
        )
    if variant not in MOVIELENS_VARIANTS:
        raise ValueError(
            f"variant must be one of {_quoted(MOVIELENS_VARIANTS)} (others are not supported yet); "
            f"got {variant!r}."
        )


def _quoted(values):
    return ", ".join(repr(v) for v in values)


def _parse_ratings(raw):
    """Parse tab-separated ``user item rating timestamp`` lines into an (n, 3) int64 array."""
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


def _search_folders(data_home):
    """Return ``[(label, folder or None)]`` in lookup order."""
    places = []
    if data_home is not None:
        if not isinstance(data_home, (str, os.PathLike)):
            raise TypeError(f"data_home must be a str or os.PathLike folder; got {type(data_home).__name__}.")
        places.append(("data_home", Path(data_home).expanduser()))
    env = os.environ.get(DATA_ENV)
    places.append((f"${DATA_ENV}", Path(env).expanduser() if env else None))
    places.append(("cache", _cache_folder()))
    return places


def _cache_folder():
    """The per-user download folder: ``$XDG_CACHE_HOME/bpr-numba`` or ``~/.cache/bpr-numba``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative value
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bpr-numba"


def _find_in(label, folder, names, notes):
    """Return ``folder/ml-100k`` or ``folder/ml-100k.zip`` if it holds every file in ``names``.

    Otherwise return None and append to ``notes`` what was found there.
    """
    extracted, archive = folder / "ml-100k", folder / "ml-100k.zip"
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
        missing = [n for n in names if f"ml-100k/{n}" not in members]
        if not missing:
            return archive
        notes.append(f"{label}: {archive} lacks ml-100k/{', ml-100k/'.join(missing)}")
    if not extracted.is_dir() and not archive.is_file():
        is_ml100k = (folder / "u.data").exists()
        hint = " (it looks like ml-100k itself: pass its parent folder)" if is_ml100k else ""
        notes.append(f"{label}: {folder} holds no ml-100k/ nor ml-100k.zip{hint}")
    return None


def _read_ml100k(names, data_home, download):
    """Return the verified bytes of each ml-100k file in ``names`` from the first copy found."""
    if not isinstance(download, (bool, np.bool_)):
        raise TypeError(f"download must be True or False; got {download!r} ({type(download).__name__}).")
    notes = []
    source = None
    for label, folder in _search_folders(data_home):
        if folder is None:
            notes.append(f"{label}: not set")
            continue
        source = _find_in(label, folder, names, notes)
        if source is not None:
            break
    if source is None:
        cache = _cache_folder()
        reason = "download=False"
        if download:
            try:
                source = _download_ml100k(cache)
            except _DownloadFailed as exc:
                reason = f"the download failed: {exc}"
        if source is None:
            places = "\n".join(f"  - {note}" for note in notes)
            raise DatasetNotFoundError(
                f"MovieLens 100k ({', '.join(names)}) not found. Looked in:\n{places}\n"
                f"and did not download it ({reason}). To use local files, pass "
                f"data_home='/path/to/folder' or set {DATA_ENV}=/path/to/folder, where the folder "
                f"holds ml-100k/ or ml-100k.zip (from {ML100K_URL}); with network access, "
                f"download=True caches it in {cache}."
            )
    return _read_verified(source, names)


def _read_verified(source, names):
    """Read ``names`` from a folder or zip and check each against its SHA-256 sum."""
    if source.suffix == ".zip":
        try:
            with zipfile.ZipFile(source) as zf:
                contents = [(f"ml-100k/{n} in {source}", zf.read(f"ml-100k/{n}")) for n in names]
        except (zipfile.BadZipFile, OSError) as exc:  # includes a member's CRC error
            raise ValueError(
                f"{source} is damaged ({exc}); delete it and load again "
                "(download=True fetches a fresh copy into the cache)."
            ) from exc
    else:
        contents = [(str(source / n), (source / n).read_bytes()) for n in names]
    for name, (where, raw) in zip(names, contents):
        _check_sha256(name, where, hashlib.sha256(raw).hexdigest())
    return [raw for _, raw in contents]


_LOCAL_REMEDY = (
    f"Delete this copy and load again with download=True (it fetches {ML100K_URL} into the "
    "cache), or replace the file with the one from the official archive."
)


def _check_sha256(name, where, actual, remedy=_LOCAL_REMEDY):
    expected = _ML100K_SHA256[name]
    if actual != expected:
        raise ValueError(
            f"MovieLens file {name} ({where}) is damaged or not the official one: SHA-256 checksum "
            f"mismatch, expected {expected}, got {actual}. {remedy}"
        )


class _DownloadFailed(Exception):
    """The archive could not be fetched (network error, HTTP error, truncated or not a zip)."""


def _download_ml100k(cache):
    """Download the archive into ``cache/ml-100k.zip``, verified, atomically; return its path.

    The archive is written to a temporary file in ``cache`` and renamed only
    after every member was checked, so a failed download leaves nothing
    behind (a cache folder created here is removed again).
    """
    url = os.environ.get(URL_ENV) or ML100K_URL
    created = not cache.exists()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ml-100k.", suffix=".zip.part", dir=cache)
    except OSError as exc:
        raise _DownloadFailed(f"cannot write to the cache folder {cache}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as response:
                    expected = response.headers.get("Content-Length")
                    received = 0
                    while chunk := response.read(1 << 16):
                        received += len(chunk)
                        if received > _MAX_DOWNLOAD_BYTES:
                            raise _DownloadFailed(
                                f"{url} sent more than {_MAX_DOWNLOAD_BYTES} bytes; not the MovieLens archive"
                            )
                        out.write(chunk)
            except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeout, bad URL
                raise _DownloadFailed(f"{url}: {exc}") from exc
        if expected is not None and received != int(expected):
            raise _DownloadFailed(f"{url}: truncated, received {received} of {expected} bytes")
        _verify_archive(tmp, url)
        os.replace(tmp, cache / "ml-100k.zip")
    except BaseException:
        os.unlink(tmp)
        if created:
            try:
                os.rmdir(cache)
            except OSError:
                pass
        raise
    return cache / "ml-100k.zip"


def _verify_archive(path, url):
    """Check that ``path`` is a zip holding every ml-100k file with its official SHA-256 sum."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = set(zf.namelist())
            missing = [n for n in _ML100K_SHA256 if f"ml-100k/{n}" not in members]
            if missing:
                raise _DownloadFailed(f"{url} is not the ml-100k archive: it lacks {', '.join(missing)}")
            for name in _ML100K_SHA256:
                digest = hashlib.sha256()
                with zf.open(f"ml-100k/{name}") as member:
                    while block := member.read(1 << 20):
                        digest.update(block)
                _check_sha256(
                    name, f"ml-100k/{name} downloaded from {url}", digest.hexdigest(),
                    remedy="Nothing was saved; check the URL (" + URL_ENV + ") or use a local copy.",
                )
    except (zipfile.BadZipFile, EOFError) as exc:
        raise _DownloadFailed(f"{url} did not send a valid zip archive (truncated?): {exc}") from exc


# --------------------------------------------------------------------------- synthetic data

_TOPIC_CONCENTRATION = 0.1  # Dirichlet alpha of the users' topic mixtures (small: few topics each)
_ITEM_AFFINITY = 2.0  # spread of log item weights within a topic (0 = topics identical)
_ACTIVITY_SIGMA = 1.0  # log-normal spread of user activity
_DRAWS_PER_BLOCK = 1 << 20  # item draws per block of users (bounds temporary memory)
_DENSE_CELLS = 1 << 22  # users x items cells per block of the exact fallback
_ROUNDS = 6  # rounds of bulk draws before the exact fallback


def make_synthetic(
    n_users, n_items, n_interactions, factors=16, popularity=1.0, random_state=None, return_factors=False
):
    """Seeded implicit feedback with popular items and a planted low-rank preference structure.

    Generative model (a topic model, so it can be sampled exactly without a
    dense users x items matrix):

    * Item popularity: ``pop[i] = rank[i] ** -popularity`` with ``rank`` a
      random permutation of 1..n_items (Zipf-like; ``popularity=0`` is uniform).
    * ``factors`` topics. Topic ``k`` is a distribution over items,
      ``phi[i, k] ∝ pop[i] * exp(2 * w[i, k])`` with ``w ~ N(0, 1)``.
    * User ``u`` has a topic mixture ``theta[u] ~ Dirichlet(0.1)`` (most users
      care about one to three topics) and a count ``n[u]``: a log-normal
      activity (sigma 1) sets multinomial shares of ``n_interactions``; every
      user gets at least one interaction when ``n_interactions >= n_users`` and
      none more than ``n_items`` (the overflow goes to other users).
    * User ``u`` picks ``n[u]`` distinct items: draws ``topic ~ theta[u]``, then
      ``item ~ phi[:, topic]``, skipping items already picked. This is sampling
      without replacement from ``P(i | u) = theta[u] @ phi[i]``, a rank-``factors``
      matrix: ``theta @ phi.T`` are the true preference scores.

    Parameters
    ----------
    n_users, n_items : int >= 1
    n_interactions : int, 1 <= n_interactions <= n_users * n_items
        The number of positives, matched exactly.
    factors : int >= 1
        Number of topics (rank of the planted structure).
    popularity : float >= 0
        Zipf exponent of item popularity.
    random_state : None, int, numpy SeedSequence, Generator or RandomState
        Seed; the same seed gives the same matrix.
    return_factors : bool
        Also return the true factors.

    Returns
    -------
    X : scipy.sparse.csr_matrix, shape (n_users, n_items)
        float32 ones; sorted ``indices`` without duplicates; ``indices`` and ``indptr``
        are int32 (int64 past 2**31 - 1 positives).
    user_factors : ndarray of float32, shape (n_users, factors)
        ``theta``, only with ``return_factors=True``.
    item_factors : ndarray of float32, shape (n_items, factors)
        ``phi``, only with ``return_factors=True``.

    Notes
    -----
    Draws are made in bulk, by blocks of users of about a million draws; users
    with near-full rows, or still short of items after six rounds, get their
    remaining items by the Gumbel top-k trick on their dense row, which is the
    same distribution. 10 million interactions (200,000 x 50,000) take about
    3.5 s on 2 cores, with a peak of about 195 MB (77 MB of it the result).
    """
    n_users = check_positive_int(n_users, "n_users")
    n_items = check_positive_int(n_items, "n_items")
    n_interactions = check_positive_int(n_interactions, "n_interactions")
    factors = check_positive_int(factors, "factors")
    popularity = check_float(popularity, "popularity", low=0.0)
    if n_interactions > n_users * n_items:
        raise ValueError(
            f"n_interactions must be <= n_users * n_items = {n_users * n_items} (each user has each "
            f"item at most once); got {n_interactions}."
        )
    if not isinstance(return_factors, (bool, np.bool_)):
        raise TypeError(f"return_factors must be True or False; got {return_factors!r}.")
    rng = _as_generator(random_state)

    log_pop = -popularity * np.log(rng.permutation(n_items) + 1.0)
    log_phi = log_pop[:, None] + _ITEM_AFFINITY * rng.standard_normal((n_items, factors))
    phi = np.exp(log_phi - log_phi.max(axis=0))
    phi /= phi.sum(axis=0)
    theta = rng.dirichlet(np.full(factors, _TOPIC_CONCENTRATION), size=n_users)
    counts = _user_counts(rng, n_users, n_items, n_interactions)

    item_table = _inverse_cdf_table(phi.T)  # one row per topic

    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(n_interactions, dtype=np.int32)
    targets = np.arange(1, n_interactions // _DRAWS_PER_BLOCK + 1) * _DRAWS_PER_BLOCK
    bounds = np.unique(np.r_[0, np.searchsorted(indptr[1:], targets), n_users])
    for start, stop in zip(bounds[:-1], bounds[1:]):
        keys = _sample_block(rng, theta[start:stop], phi, item_table, counts[start:stop])
        indices[indptr[start]:indptr[stop]] = keys % n_items
    X = _ones_csr(indptr, indices, (n_users, n_items))
    if return_factors:
        return X, theta.astype(np.float32), phi.astype(np.float32)
    return X


def _user_counts(rng, n_users, n_items, n_interactions):
    """Skewed per-user counts summing to ``n_interactions``, each in [min, n_items]."""
    floor = 1 if n_interactions >= n_users else 0
    activity = rng.lognormal(0.0, _ACTIVITY_SIGMA, n_users)
    counts = floor + rng.multinomial(n_interactions - floor * n_users, activity / activity.sum())
    excess = int(np.maximum(counts - n_items, 0).sum())
    if excess:  # hand the overflow to other users, in random order, up to their room
        np.minimum(counts, n_items, out=counts)
        order = rng.permutation(n_users)
        room = n_items - counts[order]
        counts[order] += np.clip(excess - (np.cumsum(room) - room), 0, room)
    return counts


def _sample_block(rng, theta, phi, item_table, counts):
    """Sample ``counts[u]`` distinct items for each user of a block.

    Returns the sorted keys ``u * n_items + item`` (``u`` local to the block).
    Each round draws about 1.25 x the missing items per user (topic, then item,
    by inverse CDF), keeps the first new distinct items in draw order (what
    sequential sampling without replacement picks) and leaves the rest for the
    next round. Users who would need ``n_items`` draws or more in a round, or
    are still short after the last round, finish on their dense row.
    """
    n_block, factors = theta.shape
    n_items = phi.shape[0]
    topic_table = _inverse_cdf_table(theta)
    need = counts.astype(np.int64)
    draws_per_item = np.full(n_block, 1.25)  # draws per new item, re-estimated each round
    held = [np.empty(0, dtype=np.int64)]
    for _ in range(_ROUNDS):
        n_draws = np.ceil(need * draws_per_item).astype(np.int64) + 2
        n_draws[(need == 0) | (n_draws >= n_items)] = 0  # done, or cheaper as a dense row
        active = np.flatnonzero(n_draws)
        if active.size == 0:
            break
        n_draws = n_draws[active]
        users = np.repeat(active, n_draws)
        topics = _draw(topic_table, users, rng.random(users.size))
        items = _draw(item_table, topics, rng.random(users.size))
        keys = users * n_items + items
        held_keys = np.concatenate(held)
        held_keys = held_keys[need[held_keys // n_items] > 0]  # only active users' items can repeat
        # Positions of new distinct pairs in draw order (grouped by user, as users is sorted).
        first = _first_occurrences(np.concatenate([held_keys, keys]), n_block * n_items)
        first = first[first >= held_keys.size] - held_keys.size
        owner = users[first]
        n_new = np.bincount(owner, minlength=n_block)
        rank = np.arange(first.size) - (np.cumsum(n_new) - n_new)[owner]
        take = rank < need[owner]
        held.append(keys[first[take]])
        need -= np.bincount(owner[take], minlength=n_block)
        # Users still short found fewer new items than drawn: draw 1.5 x their observed ratio
        # (at most 64 draws per item; the exact fallback below finishes the hardest rows).
        draws_per_item[active] = np.minimum(1.5 * n_draws / np.maximum(n_new[active], 1), 64.0)
    short = np.flatnonzero(need)
    if short.size:
        held.append(_gumbel_top_k(rng, theta, phi, short, need[short], np.concatenate(held)))
    return np.sort(np.concatenate(held))


def _first_occurrences(values, n_values):
    """Sorted positions of the first occurrence of each distinct value in ``values``.

    ``values`` are ints in ``[0, n_values)``. Packing value and position in one
    int64 lets a plain (fast, unstable) sort do what a stable argsort would.
    """
    n = values.size
    if n_values * n < 2**63:
        packed = np.sort(values * n + np.arange(n))
        value = packed // n
        first = packed[np.r_[True, value[1:] != value[:-1]]] % n
    else:
        first = np.unique(values, return_index=True)[1]
    is_first = np.zeros(n, dtype=bool)
    is_first[first] = True
    return np.flatnonzero(is_first)


def _inverse_cdf_table(weights):
    """Inverse-CDF tables for drawing a column of each row of ``weights`` (rows sum to 1).

    Returns ``(cdf, guide, n_columns)``: the row-wise cumulative sums, flattened, and a
    guide table (Chen 1974): ``guide[row, c]`` indexes the first entry of the
    row whose cumulative weight exceeds ``c / n_columns``. A uniform ``r``
    then needs only a search between ``guide[row, c]`` and ``guide[row, c + 1]``
    for ``c = floor(r * n_columns)``: about one step on average.
    """
    n_rows, n_columns = weights.shape
    cdf = np.cumsum(weights, axis=1)
    cdf[:, -1] = 1.0
    cells = np.arange(n_columns + 1) / n_columns
    if n_rows < n_columns:  # few long rows (topics x items)
        guide = np.stack([np.searchsorted(row, cells, side="right") for row in cdf])
    else:  # many short rows (users x topics)
        guide = np.stack([np.count_nonzero(cdf <= c, axis=1) for c in cells], axis=1)
    np.minimum(guide, n_columns - 1, out=guide)
    guide += np.arange(n_rows)[:, None] * n_columns
    return cdf.ravel(), guide.ravel(), n_columns


def _draw(table, rows, r):
    """Column drawn for each of ``rows`` by inverse CDF, from uniforms ``r`` in [0, 1)."""
    cdf, guide, n_columns = table
    cell = rows * (n_columns + 1) + np.minimum((r * n_columns).astype(np.int64), n_columns - 1)
    return _bisect(cdf, guide[cell], guide[cell + 1], r) - rows * n_columns


def _bisect(cdf, lo, hi, r):
    """For each draw, the first index in ``[lo, hi]`` with ``r < cdf[index]`` (``hi`` if none).

    A vectorised binary search; each draw has its own bounds (modifies ``lo``).
    """
    hi = hi.copy()
    todo = np.flatnonzero(lo < hi)
    while todo.size:
        mid = (lo[todo] + hi[todo]) >> 1
        right = cdf[mid] <= r[todo]
        lo[todo[right]] = mid[right] + 1
        hi[todo[~right]] = mid[~right]
        todo = todo[lo[todo] < hi[todo]]
    return lo


def _gumbel_top_k(rng, theta, phi, users, need, held):
    """Draw ``need[k]`` more distinct items for ``users[k]`` not already in ``held`` (keys).

    Adding Gumbel noise to ``log P(i | u)`` and keeping the top items is
    sequential sampling without replacement, restricted here to unheld items.
    """
    n_items = phi.shape[0]
    out = []
    step = max(1, _DENSE_CELLS // n_items)
    for lo in range(0, users.size, step):
        rows, k = users[lo:lo + step], need[lo:lo + step]
        # Items of zero weight (underflow) stay eligible, last, unlike held ones at -inf.
        scores = np.log(np.maximum(theta[rows] @ phi.T, 1e-300)) + rng.gumbel(size=(rows.size, n_items))
        mine = held[np.isin(held // n_items, rows)]
        scores[np.searchsorted(rows, mine // n_items), mine % n_items] = -np.inf
        top = np.argpartition(-scores, k.max() - 1, axis=1)[:, :k.max()]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
        pick = np.arange(top.shape[1])[None, :] < k[:, None]
        out.append(np.repeat(rows, k) * n_items + top[pick])
    return np.concatenate(out)


def holdout_split(X, test_fraction=0.2, random_state=None):
    """Split positives at random into train and test (per interaction).

    Parameters
    ----------
    X : scipy.sparse matrix, shape (n_users, n_items)
        Stored non-zeros are positives (COO, CSR or CSC).
    test_fraction : float, 0 < test_fraction < 1
        Share of positives moved to test: exactly ``round(test_fraction * nnz)``,
        chosen uniformly at random (a user may end up with no train or no
        test positive).
    random_state : None, int, numpy SeedSequence, Generator or RandomState

    Returns
    -------
    train, test : scipy.sparse.csr_matrix, shape of X
        Disjoint, summing to ``X``; float32 ones, sorted int32 ``indices`` and
        ``indptr`` (int64 past 2**31 - 1 positives).
    """
    X = check_interactions(X, "X")
    test_fraction = check_float(test_fraction, "test_fraction", low=0.0, low_inclusive=False,
                                high=1.0, high_inclusive=False)
    rng = _as_generator(random_state)
    is_test = np.zeros(X.nnz, dtype=bool)
    is_test[rng.choice(X.nnz, size=int(round(test_fraction * X.nnz)), replace=False)] = True
    return _select(X, ~is_test), _select(X, is_test)


def _select(X, mask):
    """The CSR matrix of ``X``'s entries where ``mask`` is True."""
    before = np.zeros(X.nnz + 1, dtype=np.int64)  # selected entries before each position
    np.cumsum(mask, out=before[1:])
    return _ones_csr(before[X.indptr], X.indices[mask], X.shape)


def _ones_csr(indptr, indices, shape):
    """A canonical CSR matrix of float32 ones from sorted, duplicate-free rows.

    Index arrays are int32 when they fit (int64 otherwise), the same dtype for
    both: scipy's own methods (``tocoo``) fail on a mixed int32/int64 pair.
    """
    index_dtype = np.int32 if max(indices.size, shape[1]) < 2**31 else np.int64
    X = sp.csr_matrix(
        (np.ones(indices.size, dtype=np.float32), indices.astype(index_dtype, copy=False),
         indptr.astype(index_dtype, copy=False)),
        shape=shape,
    )
    X.has_canonical_format = True
    return X


def _as_generator(random_state):
    """Turn ``random_state`` into a numpy Generator (a Generator is used as is)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(as_seed_sequence(random_state))
