"""Tests of bpr_numba.datasets.movielens: loading (local, zip, download) and parsing.

The ml-100k tests read the shared copy named by ``$BPR_NUMBA_DATA`` (a folder
holding ``ml-100k/``) and skip when it is unset. The ml-1m and latest-small
tests build small archives of the official layout in ``tmp_path``. Downloads
are served by a local ``http.server`` on 127.0.0.1; no test touches the network.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from bpr_numba import datasets
from bpr_numba.datasets import _files, movielens
from bpr_numba.data import Interactions
from bpr_numba.datasets import (
    DatasetNotFoundError,
    load_movielens,
    load_movielens_titles,
)

ML100K_FILES = sorted(movielens._ML100K_SHA256)


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="session")
def shared_folder():
    """The folder named by $BPR_NUMBA_DATA (it holds ml-100k/); skip if unset."""
    value = os.environ.get("BPR_NUMBA_DATA")
    if not value:
        pytest.skip("BPR_NUMBA_DATA is not set (CI sets it to the shared ml-100k copy)")
    folder = Path(value)
    assert (folder / "ml-100k" / "u.data").is_file(), f"BPR_NUMBA_DATA={value} does not hold ml-100k/"
    return folder


@pytest.fixture(scope="session")
def good_zip_bytes(shared_folder):
    return _zip_bytes(shared_folder / "ml-100k")


@pytest.fixture
def no_local_data(monkeypatch, tmp_path):
    """An environment with no MovieLens copy anywhere: env var unset, empty cache.

    Every download URL points at a closed local port (a test serving a zip sets its own),
    so a stray download fails at once instead of reaching the network.
    """
    monkeypatch.delenv("BPR_NUMBA_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(_files, "DOWNLOAD_TIMEOUT", 5.0)
    with socket_closed_port() as port:
        for env in datasets.MOVIELENS_URL_ENVS.values():
            monkeypatch.setenv(env, f"http://127.0.0.1:{port}/nothing-here.zip")
    return tmp_path / "xdg" / "bpr-numba"


@pytest.fixture
def server(http_server):
    """The shared local server (conftest): ``routes[path] = (status, body, claimed_length)``."""
    return http_server


def _zip_bytes(folder, alter=None):
    """The official archive's layout (members ``ml-100k/NAME``) built from a folder of its files.

    ``alter`` names a member whose first byte is changed (the zip itself stays valid).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in ML100K_FILES:
            data = (folder / name).read_bytes()
            if name == alter:
                data = bytes([data[0] ^ 1]) + data[1:]
            zf.writestr(f"ml-100k/{name}", data)
    return buffer.getvalue()


def _direct_parse(folder, split, min_rating):
    """Obviously-correct reference: (shape, train pairs, test pairs) from the text files."""
    rows = {}
    for part in ("base", "test"):
        lines = (folder / "ml-100k" / f"{split}.{part}").read_text().splitlines()
        rows[part] = [tuple(int(field) for field in line.split("\t")) for line in lines if line]
    everything = rows["base"] + rows["test"]
    shape = (max(r[0] for r in everything) + 1, max(r[1] for r in everything) + 1)
    pairs = {part: {(u, i) for u, i, rating, _ in rows[part] if rating >= min_rating} for part in rows}
    return shape, pairs["base"], pairs["test"]


def _pairs(matrix):
    coo = sp.coo_matrix(matrix)
    return set(zip(coo.row.tolist(), coo.col.tolist()))


def _assert_movielens_matrix(matrix, shape, pairs):
    assert sp.issparse(matrix) and matrix.format == "coo"
    assert matrix.shape == shape
    assert matrix.dtype == np.float32
    assert np.all(matrix.data == 1.0)
    assert matrix.nnz == len(pairs)
    assert _pairs(matrix) == pairs
    order = np.lexsort((matrix.col, matrix.row))
    assert np.array_equal(order, np.arange(matrix.nnz)), "entries are not in row-major order"


def _listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- MovieLens from local files


def test_ua_matches_the_notebook_and_a_direct_parse(shared_folder):
    train, test = load_movielens()
    shape, train_pairs, test_pairs = _direct_parse(shared_folder, "ua", 4)
    assert shape == (944, 1683)
    assert (train.nnz, test.nnz) == (49_906, 5_469)
    _assert_movielens_matrix(train, shape, train_pairs)
    _assert_movielens_matrix(test, shape, test_pairs)
    assert train.getnnz(axis=1)[0] == 0 and train.getnnz(axis=0)[0] == 0  # ids start at 1
    assert not (_pairs(train) & _pairs(test))


@pytest.mark.parametrize("split, min_rating", [("u1", 4), ("u1", 1), ("ub", 3.5), ("u5", 5)])
def test_other_splits_and_thresholds_match_a_direct_parse(shared_folder, split, min_rating):
    train, test = load_movielens(split=split, min_rating=min_rating)
    shape, train_pairs, test_pairs = _direct_parse(shared_folder, split, min_rating)
    _assert_movielens_matrix(train, shape, train_pairs)
    _assert_movielens_matrix(test, shape, test_pairs)
    if min_rating == 1:  # every rating is a positive: u1 holds all 100,000 ratings
        assert train.nnz + test.nnz == 100_000


def test_titles(shared_folder):
    titles = load_movielens_titles()
    assert isinstance(titles, np.ndarray) and titles.dtype.kind == "U"
    assert titles.shape == (1683,)
    assert titles[0] == ""
    assert titles[1] == "Toy Story (1995)"
    assert titles[543] == "Misérables, Les (1995)"  # u.item is latin-1
    text = (shared_folder / "ml-100k" / "u.item").read_bytes().decode("latin-1")
    expected = {int(line.split("|")[0]): line.split("|")[1] for line in text.splitlines() if line}
    assert {i: titles[i] for i in range(1, 1683)} == expected


def test_data_home_with_the_official_zip(tmp_path, monkeypatch, shared_folder, good_zip_bytes):
    monkeypatch.delenv("BPR_NUMBA_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "ml-100k.zip").write_bytes(good_zip_bytes)
    train, test = load_movielens(split="u2", data_home=tmp_path / "home", download=False)
    shape, train_pairs, test_pairs = _direct_parse(shared_folder, "u2", 4)
    _assert_movielens_matrix(train, shape, train_pairs)
    _assert_movielens_matrix(test, shape, test_pairs)
    assert load_movielens_titles(data_home=str(tmp_path / "home"), download=False)[1] == "Toy Story (1995)"
    assert _listing(tmp_path / "home") == ["ml-100k.zip"]  # read in place, nothing extracted


def test_data_home_is_searched_before_the_environment(tmp_path, shared_folder):
    # A copy in data_home whose ua.base is damaged must be used (and refused),
    # not silently skipped in favour of the good copy in $BPR_NUMBA_DATA.
    copy = tmp_path / "ml-100k"
    copy.mkdir()
    for name in ("ua.base", "ua.test"):
        shutil.copy(shared_folder / "ml-100k" / name, copy / name)
    raw = bytearray((copy / "ua.base").read_bytes())
    raw[1000] = ord("9") if raw[1000] != ord("9") else ord("8")
    (copy / "ua.base").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum") as info:
        load_movielens(data_home=tmp_path)
    message = str(info.value)
    assert "ua.base" in message and str(copy / "ua.base") in message
    assert movielens._ML100K_SHA256["ua.base"] in message  # expected sum
    assert "Delete" in message
    # The undamaged test file of the same copy, another split's files absent: falls through.
    train, _ = load_movielens(split="u3", data_home=tmp_path)
    assert train.shape == (944, 1683)


def test_damaged_zip_member_is_refused(tmp_path, monkeypatch, shared_folder):
    monkeypatch.delenv("BPR_NUMBA_DATA")
    (tmp_path / "ml-100k.zip").write_bytes(_zip_bytes(shared_folder / "ml-100k", alter="u.item"))
    train, _ = load_movielens(data_home=tmp_path, download=False)  # split files are intact
    assert train.nnz == 49_906
    with pytest.raises(ValueError, match="u.item.*SHA-256 checksum mismatch"):
        load_movielens_titles(data_home=tmp_path, download=False)


def test_a_corrupt_zip_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("BPR_NUMBA_DATA", raising=False)
    (tmp_path / "ml-100k.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(ValueError, match="not a readable zip.*delete it"):
        load_movielens(data_home=tmp_path, download=False)


def test_offline_error_lists_every_place(tmp_path, no_local_data, monkeypatch):
    empty_home, empty_env = tmp_path / "home", tmp_path / "env"
    empty_home.mkdir()
    empty_env.mkdir()
    monkeypatch.setenv("BPR_NUMBA_DATA", str(empty_env))
    with pytest.raises(DatasetNotFoundError) as info:
        load_movielens(data_home=empty_home, download=False)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    for place in (empty_home, empty_env, no_local_data):
        assert str(place) in message
    assert "download=False" in message
    assert "data_home=" in message and "BPR_NUMBA_DATA" in message
    assert not no_local_data.exists()  # nothing written

    monkeypatch.delenv("BPR_NUMBA_DATA")
    with pytest.raises(DatasetNotFoundError, match=r"\$BPR_NUMBA_DATA: not set"):
        load_movielens_titles(download=False)


def test_a_folder_that_is_ml_100k_itself_gets_a_hint(tmp_path, no_local_data, shared_folder):
    with pytest.raises(DatasetNotFoundError, match="pass its parent folder"):
        load_movielens(data_home=shared_folder / "ml-100k", download=False)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"variant": "10m"}, ValueError, r"variant must be one of '100k', '1m', 'latest-small'.*got '10m'"),
        ({"variant": 100}, TypeError, r"variant must be a str.*got int"),
        ({"split": "u6"}, ValueError, r"split must be one of 'ua', 'ub', 'u1'.*'u5'; got 'u6'"),
        ({"split": 1}, TypeError, r"split must be a str.*got int"),
        ({"min_rating": 6}, ValueError, r"min_rating must be between 1 and 5.*got 6"),
        ({"min_rating": 0.5}, ValueError, r"min_rating must be between 1 and 5.*got 0.5"),
        ({"min_rating": float("nan")}, ValueError, r"min_rating must be between 1 and 5.*got nan"),
        ({"min_rating": "4"}, TypeError, r"min_rating must be a number.*got '4' \(str\)"),
        ({"min_rating": True}, TypeError, r"min_rating must be a number"),
        ({"variant": "1m", "min_rating": 5.5}, ValueError, r"min_rating must be between 0 and 5.*got 5.5"),
        ({"variant": "latest-small", "min_rating": -1}, ValueError, r"between 0 and 5.*got -1"),
        ({"variant": "1m", "min_rating": "4"}, TypeError,
         r"min_rating must be a number from 0 to 5, or None"),
        ({"variant": "1m", "split": "ua"}, ValueError,
         r"split applies to variant '100k' only: MovieLens 1M has no predefined splits; got split='ua'.*"
         r"bpr_numba.split \(leave_k_out, random_split or time_split\)"),
        ({"variant": "latest-small", "split": "u1"}, ValueError, r"MovieLens latest-small has no predefined"),
        ({"data_home": 3}, TypeError, r"data_home must be a str or os.PathLike.*got int"),
        ({"download": "yes"}, TypeError, r"download must be True or False; got 'yes'"),
    ],
)
def test_load_movielens_validates_arguments(kwargs, error, pattern, no_local_data):
    with pytest.raises(error, match=pattern):
        load_movielens(**kwargs)  # checked before any lookup: no_local_data would raise otherwise


def test_split_none_is_ua_and_min_rating_none_keeps_every_rating(shared_folder):
    default, explicit = load_movielens(split=None), load_movielens("100k", "ua")
    assert _pairs(default[0]) == _pairs(explicit[0]) and _pairs(default[1]) == _pairs(explicit[1])
    train, test = load_movielens(split="u1", min_rating=None)
    assert train.nnz + test.nnz == 100_000


# --------------------------------------------------------------------------- download


def test_download_verifies_caches_and_is_reused(no_local_data, monkeypatch, server, shared_folder,
                                                good_zip_bytes):
    server.routes["/ml-100k.zip"] = (200, good_zip_bytes, None)
    monkeypatch.setenv("BPR_NUMBA_ML100K_URL", server.url + "/ml-100k.zip")
    train, test = load_movielens(split="u4")
    shape, train_pairs, test_pairs = _direct_parse(shared_folder, "u4", 4)
    _assert_movielens_matrix(train, shape, train_pairs)
    _assert_movielens_matrix(test, shape, test_pairs)
    assert _listing(no_local_data) == ["ml-100k.zip"]  # no temporary file left
    assert (no_local_data / "ml-100k.zip").read_bytes() == good_zip_bytes

    server.routes.clear()  # any further download would now fail with a 404
    train_again, _ = load_movielens(split="u4", download=False)
    assert _pairs(train_again) == train_pairs
    assert load_movielens_titles()[1] == "Toy Story (1995)"


def test_download_of_a_truncated_zip_leaves_nothing(no_local_data, monkeypatch, server, good_zip_bytes):
    server.routes["/short.zip"] = (200, good_zip_bytes[: len(good_zip_bytes) // 2], None)
    monkeypatch.setenv("BPR_NUMBA_ML100K_URL", server.url + "/short.zip")
    with pytest.raises(DatasetNotFoundError, match="did not send a valid zip archive") as info:
        load_movielens()
    assert "short.zip" in str(info.value) and "data_home=" in str(info.value)
    assert _listing(no_local_data) == []


def test_download_cut_short_leaves_nothing(no_local_data, monkeypatch, server, good_zip_bytes):
    # The server announces the full length but closes the connection half way.
    server.routes["/cut.zip"] = (200, good_zip_bytes[:100_000], len(good_zip_bytes))
    monkeypatch.setenv("BPR_NUMBA_ML100K_URL", server.url + "/cut.zip")
    with pytest.raises(DatasetNotFoundError, match=rf"truncated, received 100000 of {len(good_zip_bytes)}"):
        load_movielens()
    assert _listing(no_local_data) == []


def test_download_with_an_altered_member_is_refused(no_local_data, monkeypatch, server, shared_folder):
    altered = _zip_bytes(shared_folder / "ml-100k", alter="u.genre")  # a file load_movielens never reads
    server.routes["/altered.zip"] = (200, altered, None)
    monkeypatch.setenv("BPR_NUMBA_ML100K_URL", server.url + "/altered.zip")
    pattern = r"u.genre .*downloaded from .*altered.zip.*checksum mismatch.*Nothing was saved"
    with pytest.raises(ValueError, match=pattern):
        load_movielens()
    assert _listing(no_local_data) == []
    assert not no_local_data.exists()  # the cache folder created for the download is removed


def test_download_http_error(no_local_data, monkeypatch, server):
    monkeypatch.setenv("BPR_NUMBA_ML100K_URL", server.url + "/missing.zip")
    with pytest.raises(DatasetNotFoundError, match=r"download failed: .*missing.zip.*404") as info:
        load_movielens_titles()
    assert str(no_local_data) in str(info.value)
    assert _listing(no_local_data) == []


def test_download_into_an_existing_cache_folder_keeps_it(no_local_data, monkeypatch, server):
    no_local_data.mkdir(parents=True)
    (no_local_data / "other-file").write_text("kept")
    monkeypatch.setenv("BPR_NUMBA_ML100K_URL", server.url + "/missing.zip")
    with pytest.raises(DatasetNotFoundError):
        load_movielens()
    assert _listing(no_local_data) == ["other-file"]


def test_download_with_no_server(no_local_data, monkeypatch):
    with socket_closed_port() as port:
        monkeypatch.setenv("BPR_NUMBA_ML100K_URL", f"http://127.0.0.1:{port}/ml-100k.zip")
        with pytest.raises(DatasetNotFoundError, match="download failed"):
            load_movielens()
    assert _listing(no_local_data) == []


class socket_closed_port:  # noqa: N801 (used as a context manager)
    """A local port with nothing listening (bound, then closed)."""

    def __enter__(self):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def __exit__(self, *exc):
        return False


# --------------------------------------------------------------------------- ml-1m and latest-small
#
# No copy of these releases is shared, so the tests build small archives of the official
# layout: gapped user and movie ids, ratings on both sides of min_rating, a movie rated only
# below it, a movie never rated, latin-1 titles (ml-1m) and quoted titles with commas (csv).

ML1M_RATINGS = [  # (UserID, MovieID, Rating, Timestamp), in file order
    (1, 1193, 5, 978300760),
    (1, 661, 3, 978302109),
    (1, 3952, 4, 978301968),
    (5, 1193, 2, 978300275),
    (5, 260, 5, 978824291),
    (5, 7, 1, 978298709),  # movie 7 is only rated below 4
    (9000, 3952, 4, 978294008),
    (9000, 260, 4, 978299026),
]
ML1M_MOVIES = [  # movies.dat is latin-1; 4000 is never rated
    (7, "Sabrina (1995)", "Comedy|Romance"),
    (260, "Star Wars: Episode IV - A New Hope (1977)", "Action|Adventure|Fantasy|Sci-Fi"),
    (661, "James and the Giant Peach (1996)", "Animation|Children's|Musical"),
    (1193, "Misérables, Les (1995)", "Drama|Musical"),
    (3952, "Contender, The (2000)", "Drama|Thriller"),
    (4000, "Pokémon: The First Movie (1998)", "Animation"),
]
LATEST_RATINGS = [  # (userId, movieId, rating, timestamp): half stars
    (1, 1, 4.0, 964982703),
    (1, 50, 3.5, 964982931),
    (1, 193609, 0.5, 964983815),
    (7, 50, 4.5, 1106635946),
    (7, 1, 2.0, 1106635993),
    (610, 193609, 5.0, 1493845360),
    (610, 1, 4.0, 1493850091),
]
LATEST_MOVIES = [  # movies.csv is UTF-8, quoted where a title holds a comma or a quote
    (1, "Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
    (50, "Usual Suspects, The (1995)", "Crime|Mystery|Thriller"),
    (73, 'Misérables, Les "The Wretched" (1995)', "Drama|War"),
    (193609, "Andrew Dice Clay: Dice Rules (1991)", "Comedy"),
]
RELEASES = {
    "1m": ("ml-1m", "ratings.dat", "movies.dat", ML1M_RATINGS, ML1M_MOVIES, 1),
    "latest-small": ("ml-latest-small", "ratings.csv", "movies.csv", LATEST_RATINGS, LATEST_MOVIES, 2),
}  # name, ratings file, movies file, ratings, movies, line of the first rating


def _ratings_bytes(variant, rows):
    if variant == "1m":
        return "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows).encode("ascii")
    return ("userId,movieId,rating,timestamp\n"
            + "".join(f"{u},{i},{r:g},{t}\n" for u, i, r, t in rows)).encode("ascii")


def _movies_bytes(variant, rows):
    if variant == "1m":
        return "".join(f"{m}::{title}::{genres}\n" for m, title, genres in rows).encode("latin-1")
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")  # quotes only where needed, as the official file
    writer.writerow(["movieId", "title", "genres"])
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _release_files(variant, ratings=None, movies=None):
    """``{member name: bytes}`` of a small archive; ``ratings``/``movies`` replace a file's bytes."""
    name, ratings_file, movies_file, rating_rows, movie_rows, _ = RELEASES[variant]
    return {
        ratings_file: _ratings_bytes(variant, rating_rows) if ratings is None else ratings,
        movies_file: _movies_bytes(variant, movie_rows) if movies is None else movies,
        "README": b"A small test archive of the official layout.\n",
    }


def _write_folder(home, variant, **replace):
    folder = home / RELEASES[variant][0]
    folder.mkdir(parents=True)
    for member, data in _release_files(variant, **replace).items():
        (folder / member).write_bytes(data)
    return folder


def _release_zip(variant, **replace):
    name = RELEASES[variant][0]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member, data in _release_files(variant, **replace).items():
            zf.writestr(f"{name}/{member}", data)
    return buffer.getvalue()


def _entries(interactions):
    """``{(raw user, raw movie): (rating, timestamp)}`` of the stored interactions."""
    coo = interactions.matrix.tocoo()  # canonical CSR: same order as the timestamps
    users, items = interactions.user_ids[coo.row], interactions.item_ids[coo.col]
    return {(int(u), int(i)): (float(v), int(t))
            for u, i, v, t in zip(users, items, coo.data, interactions.timestamps)}


def _assert_release(interactions, variant, min_rating):
    """Compare with a direct reading of the rows the archive was built from."""
    rows = RELEASES[variant][3]
    assert isinstance(interactions, Interactions)
    users, movies = sorted({u for u, *_ in rows}), sorted({i for _, i, *_ in rows})
    assert interactions.user_ids.tolist() == users  # every raw id, whatever min_rating
    assert interactions.item_ids.tolist() == movies
    assert interactions.shape == (len(users), len(movies))
    assert interactions.matrix.dtype == np.float32 and interactions.timestamps.dtype == np.int64
    expected = {(u, i): (float(r), t) for u, i, r, t in rows if min_rating is None or r >= min_rating}
    assert interactions.nnz == len(expected)
    assert _entries(interactions) == expected


@pytest.mark.parametrize("variant", ["1m", "latest-small"])
@pytest.mark.parametrize("layout", ["folder", "zip"])
def test_release_loads_as_mapped_interactions(tmp_path, no_local_data, variant, layout):
    home = tmp_path / "home"
    home.mkdir()
    if layout == "folder":
        _write_folder(home, variant)
    else:
        (home / f"{RELEASES[variant][0]}.zip").write_bytes(_release_zip(variant))
    before = _listing(home)
    interactions = load_movielens(variant, data_home=home, download=False)
    _assert_release(interactions, variant, 4)
    assert _listing(home) == before  # read in place: nothing extracted, no sum recorded
    assert not no_local_data.exists()


def test_ml1m_mapping_in_detail(tmp_path, no_local_data):
    _write_folder(tmp_path, "1m")
    interactions = load_movielens("1m", data_home=tmp_path, download=False)
    assert interactions.user_ids.tolist() == [1, 5, 9000]
    assert interactions.item_ids.tolist() == [7, 260, 661, 1193, 3952]
    dense = interactions.matrix.toarray()
    assert dense.tolist() == [  # columns: movies 7, 260, 661, 1193, 3952; ratings >= 4 kept
        [0, 0, 0, 5, 4],
        [0, 5, 0, 0, 0],
        [0, 4, 0, 0, 4],
    ]
    assert interactions.timestamps.tolist() == [978300760, 978301968, 978824291, 978299026, 978294008]
    assert interactions.matrix.getnnz(axis=0)[0] == 0  # movie 7, only rated 1, keeps its column


@pytest.mark.parametrize("variant", ["1m", "latest-small"])
@pytest.mark.parametrize("min_rating", [None, 0, 2, 3.5, 4, 4.5, 5])
def test_release_min_rating(tmp_path, no_local_data, variant, min_rating):
    (tmp_path / f"{RELEASES[variant][0]}.zip").write_bytes(_release_zip(variant))
    interactions = load_movielens(variant, min_rating=min_rating, data_home=tmp_path, download=False)
    _assert_release(interactions, variant, None if min_rating == 0 else min_rating)
    if not min_rating:  # None and 0 keep every rating
        assert interactions.nnz == len(RELEASES[variant][3])


def test_release_titles_by_raw_movie_id(tmp_path, no_local_data):
    _write_folder(tmp_path, "1m")
    (tmp_path / "ml-latest-small.zip").write_bytes(_release_zip("latest-small"))
    titles = load_movielens_titles("1m", data_home=tmp_path, download=False)
    assert titles == {m: title for m, title, _ in ML1M_MOVIES}
    assert titles[1193] == "Misérables, Les (1995)"  # decoded as latin-1
    assert all(type(m) is int for m in titles)
    small = load_movielens_titles("latest-small", data_home=tmp_path, download=False)
    assert small == {m: title for m, title, _ in LATEST_MOVIES}
    assert small[50] == "Usual Suspects, The (1995)"  # a quoted comma stays in the title
    assert small[73] == 'Misérables, Les "The Wretched" (1995)'  # doubled quotes, UTF-8
    raw = (tmp_path / "ml-1m" / "movies.dat").read_bytes()
    assert b'"' not in _movies_bytes("latest-small", LATEST_MOVIES[:1])  # unquoted when not needed
    assert "Misérables".encode("latin-1") in raw  # the fixture really is latin-1
    interactions = load_movielens("latest-small", data_home=tmp_path, download=False)
    assert [small[m] for m in interactions.item_ids][:2] == ["Toy Story (1995)", "Usual Suspects, The (1995)"]


def _corrupt(variant, line, text):
    """The ratings file's bytes with line ``line`` (1-based, header included) replaced by ``text``."""
    lines = _ratings_bytes(variant, RELEASES[variant][3]).decode().split("\n")
    lines[line - 1] = text
    return "\n".join(lines).encode("latin-1")


@pytest.mark.parametrize(
    "variant, line, text, pattern",
    [
        ("1m", 3, "1::3952::4", r"line 3: expected UserID::MovieID::Rating::Timestamp, got '1::3952::4' "
                                r"\(3 fields instead of 4\)"),
        ("1m", 1, "1::1193::5::978300760::7", r"line 1: .*\(5 fields instead of 4\)"),
        ("1m", 8, "9000:260::4::978299026", r"line 8: .*\(3 fields instead of 4\)"),
        ("1m", 5, "5::260x::5::978824291", r"line 5: .*\('260x' is not an integer\)"),
        ("1m", 6, "5::7::1.5::978298709", r"line 6: ratings must be whole stars from 1 to 5; got '5::7::1.5"),
        ("1m", 2, "1::661::6::978302109", r"line 2: ratings must be whole stars from 1 to 5"),
        ("1m", 4, "", r"line 4: expected .*got '' \(1 field instead of 4\)"),
        ("1m", 7, "0::3952::4::978294008", r"line 7: user ids must be positive"),
        ("1m", 2, "1::661::3::-5", r"line 2: timestamps must be non-negative"),
        ("latest-small", 1, "user,movie,rating,timestamp",
         r"line 1: expected the header 'userId,movieId,rating,timestamp'; got 'user,movie,rating,timestamp'"),
        ("latest-small", 4, "1,193609,0.25,964983815", r"line 4: ratings must be half stars from 0.5 to 5"),
        ("latest-small", 6, "7,1,nan,1106635993", r"line 6: ratings must be half stars"),
        ("latest-small", 3, "1,50,3.5", r"line 3: expected userId,movieId,rating,timestamp, got '1,50,3.5'"),
        ("latest-small", 8, "610;1;4.0;1493850091", r"line 8: .*\(1 field instead of 4\)"),
        ("latest-small", 5, "7,50,4.5,1106635946.5", r"line 5: .*'1106635946.5' is not an integer"),
        ("latest-small", 2, "1,-1,4.0,964982703", r"line 2: movie ids must be positive"),
    ],
)
def test_a_malformed_ratings_line_names_the_file_and_line(tmp_path, no_local_data, variant, line, text,
                                                          pattern):
    folder = _write_folder(tmp_path, variant, ratings=_corrupt(variant, line, text))
    with pytest.raises(ValueError, match=pattern) as info:
        load_movielens(variant, data_home=tmp_path, download=False)
    assert str(info.value).startswith(f"{folder / RELEASES[variant][1]}, line {line}: ")


def test_a_malformed_line_in_a_zip_names_the_member_and_archive(tmp_path, no_local_data):
    (tmp_path / "ml-1m.zip").write_bytes(_release_zip("1m", ratings=_corrupt("1m", 2, "1::661::3")))
    with pytest.raises(ValueError, match=rf"^ml-1m/ratings.dat in {tmp_path / 'ml-1m.zip'}, line 2: "):
        load_movielens("1m", data_home=tmp_path, download=False)


@pytest.mark.parametrize(
    "variant, movies, pattern",
    [
        ("1m", b"7::Sabrina (1995)::Comedy\n260::Star Wars (1977)\n",
         r"movies.dat, line 2: expected MovieID::Title::Genres with a positive id; "
         r"got '260::Star Wars \(1977\)'"),
        ("1m", b"7::Sabrina (1995)::Comedy\n\n", r"movies.dat, line 2: expected MovieID::Title::Genres"),
        ("1m", b"7::A::B\nx7::C::D\n", r"movies.dat, line 2: .*got 'x7::C::D'"),
        ("latest-small", b"movieId,title,genres\n1,A,B\n2,B,C\n1,Again,D\n",
         r"movies.csv, line 4: movie id 1 appears again \(first on line 2\)"),
        ("latest-small", b"movieId,title,genres\n1,A,B\n2,\"Unterminated, title,C\n",
         r"movies.csv, line 3: unexpected end of data"),
        ("latest-small", b"id,title,genres\n1,A,B\n", r"movies.csv, line 1: expected the header"),
        ("latest-small", b"movieId,title,genres\n1,Caf\xe9,B\n", r"movies.csv, line 2: not UTF-8 text"),
        ("latest-small", b"movieId,title,genres\n", r"movies.csv holds no movies"),
    ],
)
def test_a_malformed_movies_file_names_the_file_and_line(tmp_path, no_local_data, variant, movies, pattern):
    _write_folder(tmp_path, variant, movies=movies)
    with pytest.raises(ValueError, match=pattern):
        load_movielens_titles(variant, data_home=tmp_path, download=False)
    assert load_movielens(variant, data_home=tmp_path, download=False).nnz > 0  # ratings are fine


def test_an_empty_ratings_file_is_refused(tmp_path, no_local_data):
    _write_folder(tmp_path, "latest-small", ratings=b"userId,movieId,rating,timestamp\n")
    with pytest.raises(ValueError, match=r"ratings.csv holds no ratings"):
        load_movielens("latest-small", data_home=tmp_path, download=False)


@pytest.mark.parametrize("variant, env", [("1m", "BPR_NUMBA_ML1M_URL"),
                                          ("latest-small", "BPR_NUMBA_ML_LATEST_SMALL_URL")])
def test_release_not_found_gives_advice(tmp_path, no_local_data, monkeypatch, variant, env):
    name = RELEASES[variant][0]
    (tmp_path / "env").mkdir()
    _write_folder(tmp_path / "env", "latest-small" if variant == "1m" else "1m")  # the other release
    monkeypatch.setenv("BPR_NUMBA_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_movielens(variant, download=False)
    message = str(info.value)
    assert f"{tmp_path / 'env'} holds no {name}/ nor {name}.zip" in message
    assert f"{no_local_data} holds no {name}/ nor {name}.zip" in message
    assert "download=False" in message and "data_home=" in message and "BPR_NUMBA_DATA=" in message
    assert f"files.grouplens.org/datasets/movielens/{name}.zip" in message and env in message
    assert not no_local_data.exists()
    # Pointing at the release's own folder gets a hint; a folder lacking a file is named.
    folder = _write_folder(tmp_path / "home", variant)
    with pytest.raises(DatasetNotFoundError, match="pass its parent folder"):
        load_movielens_titles(variant, data_home=folder, download=False)
    (folder / RELEASES[variant][2]).unlink()
    with pytest.raises(DatasetNotFoundError, match=rf"{name}/ lacks {RELEASES[variant][2]}"):
        load_movielens_titles(variant, data_home=tmp_path / "home", download=False)
    assert load_movielens(variant, data_home=tmp_path / "home", download=False).nnz > 0


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("variant, env", [("1m", "BPR_NUMBA_ML1M_URL"),
                                          ("latest-small", "BPR_NUMBA_ML_LATEST_SMALL_URL")])
def test_release_download_records_the_sum_and_refuses_a_changed_archive(no_local_data, monkeypatch, server,
                                                                        variant, env):
    name = RELEASES[variant][0]
    archive = _release_zip(variant)
    server.routes[f"/{name}.zip"] = (200, archive, None)
    monkeypatch.setenv(env, server.url + f"/{name}.zip")
    _assert_release(load_movielens(variant), variant, 4)
    assert _listing(no_local_data) == [f"{name}.zip", f"{name}.zip.sha256"]  # no temporary file left
    assert (no_local_data / f"{name}.zip").read_bytes() == archive
    assert (no_local_data / f"{name}.zip.sha256").read_text() == f"{_sha256(archive)}  {name}.zip\n"

    server.routes.clear()  # any further download would now fail with a 404
    _assert_release(load_movielens(variant, min_rating=None, download=False), variant, None)
    assert load_movielens_titles(variant)[1 if variant == "latest-small" else 7] in {
        "Toy Story (1995)", "Sabrina (1995)"}

    # A valid archive of the same layout, one rating changed: refused, with the way out.
    rows = list(RELEASES[variant][3])
    rows[0] = rows[0][:2] + (1,) + rows[0][3:]
    changed = _release_zip(variant, ratings=_ratings_bytes(variant, rows))
    (no_local_data / f"{name}.zip").write_bytes(changed)
    for load in (load_movielens, load_movielens_titles):
        with pytest.raises(ValueError, match="has changed since it was downloaded") as info:
            load(variant, download=False)
        message = str(info.value)
        assert _sha256(changed) in message and _sha256(archive) in message
        cached = no_local_data / f"{name}.zip"
        assert f"Delete {cached} and {cached}.sha256" in message

    # Following the advice: delete both, and a new download records the new archive's sum.
    server.routes[f"/{name}.zip"] = (200, changed, None)
    (no_local_data / f"{name}.zip").unlink()
    (no_local_data / f"{name}.zip.sha256").unlink()
    assert load_movielens(variant, min_rating=None).matrix.sum() == pytest.approx(
        sum(r for _, _, r, _ in rows))
    assert (no_local_data / f"{name}.zip.sha256").read_text().split()[0] == _sha256(changed)


def test_a_recorded_sum_is_checked_wherever_the_archive_is(tmp_path, no_local_data):
    archive = _release_zip("latest-small")
    (tmp_path / "ml-latest-small.zip").write_bytes(archive)
    # The bare sum, upper case, no file name: still read.
    (tmp_path / "ml-latest-small.zip.sha256").write_text(_sha256(archive).upper() + "\n")
    assert load_movielens("latest-small", data_home=tmp_path, download=False).nnz == 4
    (tmp_path / "ml-latest-small.zip.sha256").write_text(_sha256(b"other") + "  ml-latest-small.zip\n")
    with pytest.raises(ValueError, match="has changed since it was downloaded"):
        load_movielens("latest-small", data_home=tmp_path, download=False)
    (tmp_path / "ml-latest-small.zip.sha256").write_text("not a sum\n")
    with pytest.raises(ValueError, match=r"does not hold a SHA-256 sum.*Delete"):
        load_movielens("latest-small", data_home=tmp_path, download=False)


def test_release_download_of_a_malformed_archive_saves_nothing(no_local_data, monkeypatch, server):
    bad = _release_zip("1m", movies=b"1::Toy Story (1995)::Animation\n2::Jumanji (1995)\n")
    server.routes["/bad.zip"] = (200, bad, None)
    monkeypatch.setenv("BPR_NUMBA_ML1M_URL", server.url + "/bad.zip")
    # Loading ratings verifies the whole archive, movies.dat included.
    pattern = r"ml-1m/movies.dat downloaded from .*bad.zip, line 2: .*Nothing was saved.*BPR_NUMBA_ML1M_URL"
    with pytest.raises(ValueError, match=pattern):
        load_movielens("1m")
    assert not no_local_data.exists()

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:  # no movies.dat
        zf.writestr("ml-1m/ratings.dat", _ratings_bytes("1m", ML1M_RATINGS))
    server.routes["/partial.zip"] = (200, buffer.getvalue(), None)
    monkeypatch.setenv("BPR_NUMBA_ML1M_URL", server.url + "/partial.zip")
    pattern = r"partial.zip is not the ml-1m archive: it lacks movies.dat"
    with pytest.raises(DatasetNotFoundError, match=pattern):
        load_movielens("1m")
    assert not no_local_data.exists()


def test_release_download_size_cap(no_local_data, monkeypatch, server):
    archive = _release_zip("latest-small")
    release = movielens._MOVIELENS["latest-small"]
    assert release.max_bytes == 16 * 2**20
    monkeypatch.setitem(movielens._MOVIELENS, "latest-small",
                        dataclasses.replace(release, max_bytes=len(archive) - 1))
    server.routes["/big.zip"] = (200, archive, None)
    monkeypatch.setenv("BPR_NUMBA_ML_LATEST_SMALL_URL", server.url + "/big.zip")
    with pytest.raises(DatasetNotFoundError, match=rf"sent more than {len(archive) - 1} bytes"):
        load_movielens("latest-small")
    assert not no_local_data.exists()
    monkeypatch.setitem(movielens._MOVIELENS, "latest-small",
                        dataclasses.replace(release, max_bytes=len(archive)))
    assert load_movielens("latest-small").nnz == 4


def test_release_parsing_is_vectorised_at_scale(tmp_path, no_local_data):
    # 200,000 lines parse in well under a second (no per-line Python loop); values round-trip.
    rng = np.random.default_rng(0)
    n = 200_000
    users, movies = rng.integers(1, 6041, n), rng.integers(1, 3953, n)
    stars, times = rng.integers(1, 6, n), rng.integers(956_703_932, 1_046_454_590, n)
    text = "\n".join(f"{u}::{m}::{r}::{t}" for u, m, r, t in zip(users, movies, stars, times)) + "\n"
    release = movielens._MOVIELENS["1m"]
    started = time.perf_counter()
    table = movielens._parse_ratings_file(text.encode(), "ratings.dat", release)
    elapsed = time.perf_counter() - started
    assert np.array_equal(table["user"], users) and np.array_equal(table["item"], movies)
    assert np.array_equal(table["rating"], stars) and np.array_equal(table["timestamp"], times)
    assert elapsed < 2.0, f"parsing {n} lines took {elapsed:.2f} s"
