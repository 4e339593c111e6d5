"""Tests of bpr_numba.datasets: MovieLens loading (local, zip, download) and synthetic data.

The MovieLens tests read the shared copy named by ``$BPR_NUMBA_DATA`` (a folder
holding ``ml-100k/``) and skip when it is unset. Downloads are served by a
local ``http.server`` on 127.0.0.1; no test touches the network.
"""

from __future__ import annotations

import http.server
import io
import os
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bpr_numba import datasets
from bpr_numba.datasets import (
    DatasetNotFoundError,
    holdout_split,
    load_movielens,
    load_movielens_titles,
    make_synthetic,
)

ML100K_FILES = sorted(datasets._ML100K_SHA256)


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
    """An environment with no MovieLens copy anywhere: env var unset, empty cache."""
    monkeypatch.delenv("BPR_NUMBA_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(datasets, "_DOWNLOAD_TIMEOUT", 5.0)
    return tmp_path / "xdg" / "bpr-numba"


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1 serving ``routes[path] = (status, body, claimed_length)``."""
    routes = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            status, body, claimed = routes.get(self.path, (404, b"not found", None))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if claimed is None else claimed))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True  # a body shorter than claimed ends with a closed socket

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.routes = routes
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


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
    assert datasets._ML100K_SHA256["ua.base"] in message  # expected sum
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
        ({"variant": "1m"}, ValueError, r"variant must be one of '100k'.*got '1m'"),
        ({"variant": 100}, TypeError, r"variant must be a str.*got int"),
        ({"split": "u6"}, ValueError, r"split must be one of 'ua', 'ub', 'u1'.*'u5'; got 'u6'"),
        ({"split": None}, TypeError, r"split must be a str.*got NoneType"),
        ({"min_rating": 6}, ValueError, r"min_rating must be between 1 and 5.*got 6"),
        ({"min_rating": 0.5}, ValueError, r"min_rating must be between 1 and 5.*got 0.5"),
        ({"min_rating": float("nan")}, ValueError, r"min_rating must be between 1 and 5.*got nan"),
        ({"min_rating": "4"}, TypeError, r"min_rating must be a number.*got '4' \(str\)"),
        ({"min_rating": True}, TypeError, r"min_rating must be a number"),
        ({"data_home": 3}, TypeError, r"data_home must be a str or os.PathLike.*got int"),
        ({"download": "yes"}, TypeError, r"download must be True or False; got 'yes'"),
    ],
)
def test_load_movielens_validates_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        load_movielens(**kwargs)


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


# --------------------------------------------------------------------------- make_synthetic


def _assert_clean_csr(X, shape, nnz):
    assert isinstance(X, sp.csr_matrix)
    assert X.shape == shape
    assert X.nnz == nnz
    assert X.data.dtype == np.float32 and np.all(X.data == 1.0)
    assert X.indices.dtype == np.int32 and X.indptr.dtype == np.int32
    assert X.tocoo().nnz == nnz  # scipy methods work (no mixed index dtypes)
    assert X.indptr[0] == 0 and X.indptr[-1] == nnz and np.all(np.diff(X.indptr) >= 0)
    assert X.indices.min(initial=0) >= 0 and X.indices.max(initial=0) < shape[1]
    row_of = np.repeat(np.arange(shape[0]), np.diff(X.indptr))
    keys = row_of * shape[1] + X.indices
    assert np.all(np.diff(keys) > 0), "indices not strictly increasing within rows (unsorted or duplicates)"
    assert X.has_canonical_format


@pytest.mark.parametrize(
    "n_users, n_items, n_interactions",
    [(1, 1, 1), (5, 7, 35), (5, 7, 34), (10, 3, 1), (3, 1000, 2900), (300, 500, 20_000),
     (2000, 300, 590_000)],  # the last one is 98% full: dense rows
)
@pytest.mark.parametrize("popularity", [0.0, 1.0, 40.0])
def test_make_synthetic_exact_counts_and_format(n_users, n_items, n_interactions, popularity):
    X = make_synthetic(n_users, n_items, n_interactions, popularity=popularity, random_state=3)
    _assert_clean_csr(X, (n_users, n_items), n_interactions)
    if n_interactions >= n_users:
        assert np.diff(X.indptr).min() >= 1  # every user has at least one interaction


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 40),
    st.floats(0.0, 1.0),
    st.integers(1, 5),
    st.floats(0.0, 3.0),
    st.integers(0, 2**32 - 1),
)
def test_make_synthetic_property(n_users, n_items, fill, factors, popularity, seed):
    n_interactions = max(1, round(fill * n_users * n_items))
    X, user_factors, item_factors = make_synthetic(
        n_users, n_items, n_interactions, factors=factors, popularity=popularity, random_state=seed,
        return_factors=True,
    )
    _assert_clean_csr(X, (n_users, n_items), n_interactions)
    assert user_factors.shape == (n_users, factors) and item_factors.shape == (n_items, factors)
    assert np.allclose(user_factors.sum(axis=1), 1, atol=1e-5)  # topic mixtures
    assert np.allclose(item_factors.sum(axis=0), 1, atol=1e-5)  # topics' item distributions


def test_make_synthetic_is_seeded():
    first = make_synthetic(400, 300, 6000, random_state=7)
    again = make_synthetic(400, 300, 6000, random_state=7)
    other = make_synthetic(400, 300, 6000, random_state=8)
    assert np.array_equal(first.indptr, again.indptr) and np.array_equal(first.indices, again.indices)
    assert (first != other).nnz > 0
    from_generator = make_synthetic(400, 300, 6000, random_state=np.random.default_rng(7))
    assert np.array_equal(from_generator.indices, first.indices)  # default_rng(7) is seed 7
    from_sequence = make_synthetic(400, 300, 6000, random_state=np.random.SeedSequence(7))
    assert np.array_equal(from_sequence.indices, first.indices)
    from_legacy = make_synthetic(400, 300, 6000, random_state=np.random.RandomState(7))
    again_legacy = make_synthetic(400, 300, 6000, random_state=np.random.RandomState(7))
    assert np.array_equal(from_legacy.indices, again_legacy.indices)
    _assert_clean_csr(from_legacy, (400, 300), 6000)
    unseeded = make_synthetic(400, 300, 6000)
    assert (unseeded != first).nnz > 0


def _top_decile_share(X):
    counts = np.sort(np.bincount(X.indices, minlength=X.shape[1]))[::-1]
    return counts[: X.shape[1] // 10].sum() / counts.sum()


def test_popularity_skews_items():
    flat = make_synthetic(1000, 1700, 55_000, popularity=0.0, random_state=1)
    zipf = make_synthetic(1000, 1700, 55_000, popularity=1.0, random_state=1)
    steep = make_synthetic(1000, 1700, 55_000, popularity=2.0, random_state=1)
    # Measured: about 0.28, 0.50 and 0.85.
    assert _top_decile_share(flat) < 0.35
    assert _top_decile_share(zipf) > _top_decile_share(flat) + 0.15
    assert _top_decile_share(steep) > _top_decile_share(zipf) + 0.15


def _mean_auc(train, test, scores):
    """Mean per-user AUC of test positives against items in neither train nor test (ties half)."""
    aucs = []
    for u in range(test.shape[0]):
        positives = test.indices[test.indptr[u]:test.indptr[u + 1]]
        excluded = np.zeros(test.shape[1], dtype=bool)
        excluded[positives] = True
        excluded[train.indices[train.indptr[u]:train.indptr[u + 1]]] = True
        negatives = scores[u, ~excluded]
        if positives.size == 0 or negatives.size == 0:
            continue
        pos = scores[u, positives][:, None]
        aucs.append(np.mean((pos > negatives) + 0.5 * (pos == negatives)))
    return float(np.mean(aucs))


@pytest.mark.parametrize("popularity", [0.0, 1.0])
def test_planted_structure_predicts_held_out_items(popularity):
    X, user_factors, item_factors = make_synthetic(
        1000, 1700, 55_000, popularity=popularity, random_state=0, return_factors=True
    )
    train, test = holdout_split(X, 0.2, random_state=1)
    true_auc = _mean_auc(train, test, user_factors @ item_factors.T)
    item_counts = np.asarray(train.sum(axis=0), dtype=float)
    popularity_auc = _mean_auc(train, test, np.repeat(item_counts, X.shape[0], axis=0))
    shuffled = np.random.default_rng(0).permutation(X.shape[0])
    wrong_user_auc = _mean_auc(train, test, user_factors[shuffled] @ item_factors.T)
    # Measured (seeds 0-2): true 0.84 / 0.91, popularity 0.71 / 0.85, wrong users 0.60 / 0.79.
    assert true_auc > popularity_auc + 0.04
    assert true_auc > wrong_user_auc + 0.1
    assert true_auc > 0.8


@pytest.mark.parametrize("rounds", [6, 0])  # bulk draws; the dense Gumbel fallback alone
def test_sampler_is_sequential_sampling_without_replacement(monkeypatch, rounds):
    """Items drawn per user follow P(a) = p_a and P({a, b}) = sum over orders of p_a p_b / (1 - p_a)."""
    n_users = 60_000
    theta = np.tile([0.3, 0.7], (n_users, 1))
    phi = np.array([[8, 1], [6, 1], [4, 1], [2, 1], [1, 1], [1, 2], [1, 4], [1, 8], [0.5, 0.5], [0.5, 0.5]])
    phi /= phi.sum(axis=0)
    p = theta[0] @ phi.T
    need = np.tile([1, 2], n_users // 2)  # users alternate: one item, two items
    monkeypatch.setattr(datasets, "_ROUNDS", rounds)
    table = datasets._inverse_cdf_table(phi.T)
    keys = datasets._sample_block(np.random.default_rng(5), theta, phi, table, need)
    assert np.array_equal(keys // 10, np.repeat(np.arange(n_users), need))
    items = keys % 10
    singles = items[np.repeat(need == 1, need)]
    pairs = items[np.repeat(need == 2, need)].reshape(-1, 2)
    assert np.all(pairs[:, 0] < pairs[:, 1])
    # Standard errors <= 0.003; the draws are seeded, so this is deterministic.
    assert np.abs(np.bincount(singles, minlength=10) / singles.size - p).max() < 0.012
    for a in range(10):
        for b in range(a + 1, 10):
            expected = p[a] * p[b] / (1 - p[a]) + p[b] * p[a] / (1 - p[b])
            found = np.mean((pairs[:, 0] == a) & (pairs[:, 1] == b))
            assert abs(found - expected) < 0.012, ((a, b), found, expected)


@pytest.mark.parametrize(
    "args, kwargs, error, pattern",
    [
        ((10, 10, 101), {}, ValueError, r"n_interactions must be <= n_users \* n_items = 100.*got 101"),
        ((0, 10, 5), {}, ValueError, r"n_users must be a positive integer"),
        ((10, 2.5, 5), {}, TypeError, r"n_items must be a positive integer; got 2.5"),
        ((10, 10, 0), {}, ValueError, r"n_interactions must be a positive integer"),
        ((10, 10, 5), {"factors": 0}, ValueError, r"factors must be a positive integer"),
        ((10, 10, 5), {"popularity": -1}, ValueError, r"popularity must be >= 0.0; got -1"),
        ((10, 10, 5), {"popularity": "zipf"}, TypeError, r"popularity must be a real number"),
        ((10, 10, 5), {"random_state": "seed"}, TypeError, r"random_state must be None, a non-negative int"),
        ((10, 10, 5), {"random_state": -3}, ValueError, r"random_state must be a non-negative integer.*-3"),
        ((10, 10, 5), {"return_factors": "yes"}, TypeError, r"return_factors must be True or False"),
    ],
)
def test_make_synthetic_validates_arguments(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        make_synthetic(*args, **kwargs)


# --------------------------------------------------------------------------- holdout_split


def test_holdout_split_partitions_positives():
    X = make_synthetic(300, 200, 5000, random_state=2)
    train, test = holdout_split(X, test_fraction=0.25, random_state=4)
    for part, nnz in ((train, 3750), (test, 1250)):
        _assert_clean_csr(part, X.shape, nnz)
    assert (train + test != X).nnz == 0  # disjoint (a shared entry would sum to 2) and complete
    again_train, again_test = holdout_split(X, test_fraction=0.25, random_state=4)
    assert np.array_equal(again_test.indices, test.indices) and np.array_equal(again_test.indptr, test.indptr)
    _, other_test = holdout_split(X, test_fraction=0.25, random_state=5)
    assert (other_test != test).nnz > 0
    # Per-interaction: every user's share of test positives is near 1/4 on average.
    share = test.getnnz(axis=1) / np.maximum(X.getnnz(axis=1), 1)
    assert abs(share[X.getnnz(axis=1) >= 20].mean() - 0.25) < 0.03


def test_holdout_split_accepts_coo_and_movielens(shared_folder):
    train, _ = load_movielens()
    fit, held_out = holdout_split(train, 0.1, random_state=0)  # COO in
    _assert_clean_csr(fit, train.shape, train.nnz - round(0.1 * train.nnz))
    assert held_out.nnz == round(0.1 * train.nnz)
    assert _pairs(fit) | _pairs(held_out) == _pairs(train)


@pytest.mark.parametrize(
    "X, fraction, error, pattern",
    [
        (sp.eye(5, format="csr"), 0.0, ValueError, r"test_fraction must be > 0.0; got 0.0"),
        (sp.eye(5, format="csr"), 1.0, ValueError, r"test_fraction must be < 1.0; got 1.0"),
        (sp.eye(5, format="csr"), "0.2", TypeError, r"test_fraction must be a real number"),
        (np.eye(5), 0.2, TypeError, r"X must be a scipy.sparse matrix"),
    ],
)
def test_holdout_split_validates_arguments(X, fraction, error, pattern):
    with pytest.raises(error, match=pattern):
        holdout_split(X, fraction)
