"""bpr_numba.datasets.papers: the ``user item item ...`` split format and Gowalla.

No test needs the network: downloads are served by ``http.server`` on 127.0.0.1
from small files built in tmp_path, with the expected sums monkeypatched to
theirs. The real-data test reads the published Gowalla split when
``$BPR_NUMBA_DATA`` holds it (CI sets it to the shared data folder).
"""

from __future__ import annotations

import hashlib
import socket
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sparse_checks import assert_canonical_ones

from bpr_numba.datasets import (
    GOWALLA_SHAPE,
    DatasetNotFoundError,
    load_gowalla,
    read_split_file,
)
from bpr_numba.datasets import _files, papers


def closed_port():
    """A local port with nothing listening (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def twin_read(text, n_users=None, n_items=None):
    """An obviously correct reader: a dense 0/1 array from the file's text, line by line."""
    rows = []
    for line in text.split("\n"):
        tokens = line.split()
        if tokens:
            rows.append((int(tokens[0]), [int(t) for t in tokens[1:]]))
    if n_users is None:
        n_users = max((u for u, _ in rows), default=-1) + 1
    if n_items is None:
        n_items = max((i for _, items in rows for i in items), default=-1) + 1
    dense = np.zeros((n_users, n_items), dtype=np.float32)
    for user, items in rows:
        for item in items:
            dense[user, item] = 1.0
    return dense


# --------------------------------------------------------------------------- read_split_file


@st.composite
def split_texts(draw):
    """A random small split file: distinct users in random order, items with repeats, and
    the format's freedoms (runs of spaces or tabs, trailing spaces, CRLF, blank lines)."""
    n_users = draw(st.integers(1, 30))
    n_items = draw(st.integers(1, 40))
    users = draw(st.lists(st.integers(0, n_users - 1), unique=True, max_size=n_users))
    users = draw(st.permutations(users))
    separator = st.sampled_from([" ", "  ", "\t", " \t"])
    end = draw(st.sampled_from(["\n", "\r\n"]))
    lines = []
    for user in users:
        items = draw(st.lists(st.integers(0, n_items - 1), max_size=12))
        tokens = [str(user)] + [str(i) for i in items]
        text = tokens[0]
        for token in tokens[1:]:
            text += draw(separator) + token
        text += draw(st.sampled_from(["", " ", "\t"]))
        lines.append(text)
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", "  ", "\t"])))  # a blank line
    text = end.join(lines) + (end if draw(st.booleans()) else "")
    return text, n_users, n_items


@settings(max_examples=60, deadline=None)
@given(case=split_texts(), give_shape=st.booleans())
def test_read_split_file_matches_a_line_by_line_twin(tmp_path_factory, case, give_shape):
    text, n_users, n_items = case
    path = tmp_path_factory.mktemp("split") / "train.txt"
    path.write_bytes(text.encode("ascii"))
    shape = (n_users, n_items) if give_shape else (None, None)
    expected = twin_read(text, *shape)
    X = read_split_file(path, *shape)
    assert_canonical_ones(X, expected.shape)
    np.testing.assert_array_equal(X.toarray(), expected)


def test_empty_rows_blank_lines_and_merged_repeats(tmp_path):
    path = tmp_path / "split.txt"
    path.write_text("3 4 4 1 4\n\n0\n  \n1 0\n")  # user 2 has no line, user 0 a line without items
    X = read_split_file(path)
    assert_canonical_ones(X, (4, 5))
    assert X.getnnz(axis=1).tolist() == [0, 1, 0, 2]
    assert X[3].indices.tolist() == [1, 4]  # 4 three times: merged into one entry
    wide = read_split_file(str(path), n_users=10, n_items=7)
    assert_canonical_ones(wide, (10, 7))
    np.testing.assert_array_equal(wide.toarray()[:4, :5], X.toarray())


def test_an_empty_file_is_an_empty_matrix(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("")
    assert read_split_file(path).shape == (0, 0)
    assert read_split_file(path, n_users=3, n_items=2).nnz == 0


@pytest.mark.parametrize(
    "text, kwargs, line, fragment",
    [
        ("0 1 2\n1 -3 4\n", {}, 2, "item id -3 is negative"),
        ("0 1\n-1 2\n", {}, 2, "user id -1 is negative"),
        ("0 1 2\n1 3 4.5\n", {}, 2, "item id '4.5' is not a non-negative integer"),
        ("0 1\n1 2\n2 1e3\n", {}, 3, "'1e3' is not a non-negative integer"),
        ("x 1\n", {}, 1, "user id 'x' is not a non-negative integer"),
        ("0 1\n1 2,3\n", {}, 2, "'2,3' is not"),
        ("0 1\n1 caf\u00e9\n", {}, 2, "'caf\u00e9' is not"),
        ("0 1\n1 2\n2 40\n", {"n_items": 40}, 3, "item id 40 is out of range: n_items=40 (valid ids: 0..39)"),
        ("0 1\n5 2\n", {"n_users": 5}, 2, "user id 5 is out of range: n_users=5 (valid ids: 0..4)"),
        ("0 1\n1 99999999999999999999\n", {}, 2, "item id 99999999999999999999 is out of range"),
        ("0 1\n1 2\n2 3\n1 4\n", {}, 4, "user id 1 starts a second line (first on line 2)"),
        # several problems: the first line's is reported, whatever its kind
        ("0 1\n1 50\n2 x\n", {"n_items": 10}, 2, "item id 50 is out of range"),
        ("0 1\n1 x\n0 2\n", {}, 2, "item id 'x' is not"),
        ("0 1\n1 2\n1 3\n2 x\n", {}, 3, "user id 1 starts a second line"),
        # the digits of a bad token are not ids: "99" of "2.99" is not reported out of range
        ("0 1\n1 2.99\n", {"n_items": 10}, 2, "item id '2.99' is not a non-negative integer"),
        ("0 1\n1 3\n1-4 2\n", {}, 3, "user id '1-4' is not"),
    ],
)
def test_errors_name_the_file_the_line_and_the_text(tmp_path, text, kwargs, line, fragment):
    path = tmp_path / "bad-split.txt"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(ValueError) as info:
        read_split_file(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}, line {line}: "), message
    assert fragment in message
    shown = text.split("\n")[line - 1]
    assert f"the line is {shown!r}" in message


@pytest.mark.parametrize("kwargs, error", [({"n_users": 0}, ValueError), ({"n_items": 2.5}, TypeError)])
def test_read_split_file_checks_its_arguments(tmp_path, kwargs, error):
    path = tmp_path / "split.txt"
    path.write_text("0 1\n")
    with pytest.raises(error, match="n_users|n_items"):
        read_split_file(path, **kwargs)
    with pytest.raises(TypeError, match="path must be"):
        read_split_file(3)


# --------------------------------------------------------------------------- Gowalla: the real split


@pytest.fixture(scope="module")
def gowalla_folder():
    value = os.environ.get("BPR_NUMBA_DATA")
    folder = Path(value) / "gowalla" if value else None
    if folder is None or not (folder / "train.txt").is_file() or not (folder / "test.txt").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must set BPR_NUMBA_DATA to a folder holding gowalla/; got {value!r}")
        pytest.skip("needs the published Gowalla split: set BPR_NUMBA_DATA to a folder holding "
                    "gowalla/train.txt and gowalla/test.txt (CI sets it to the shared data folder); "
                    f"BPR_NUMBA_DATA={value!r}")
    return folder


def test_gowalla_counts_shape_and_disjointness(gowalla_folder, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # a download would land here
    train, test = load_gowalla(download=False)
    assert GOWALLA_SHAPE == (29858, 40981)
    assert_canonical_ones(test, GOWALLA_SHAPE)
    assert train.shape == GOWALLA_SHAPE and train.dtype == np.float32 and train.indices.dtype == np.int32
    assert (train.nnz, test.nnz) == (810_128, 217_242)
    assert train.multiply(test).nnz == 0  # no (user, item) on both sides
    assert np.all(train.getnnz(axis=1) > 0)  # every user trains
    assert not (tmp_path / "xdg").exists()
    # Same pairs as a plain Python reading of the file (the twin, on the real data).
    pairs = set()
    with open(gowalla_folder / "train.txt") as lines:
        for line in lines:
            tokens = line.split()
            pairs.update((int(tokens[0]), int(item)) for item in tokens[1:])
    rows, cols = train.nonzero()
    assert set(zip(rows.tolist(), cols.tolist())) == pairs


def test_reading_gowalla_train_is_fast(gowalla_folder):
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        X = read_split_file(gowalla_folder / "train.txt")
        seconds.append(time.perf_counter() - start)
    assert X.nnz == 810_128
    assert min(seconds) < 1.0, seconds  # 0.11-0.13 s measured on 2 cores, about 0.4 s when they were busy


# --------------------------------------------------------------------------- Gowalla: finding, downloading

SMALL = {
    "train.txt": b"0 1 2 3\n1 40980\n29857 0 5\n",
    "test.txt": b"0 4\n1 7 8\n29857 1\n",
}


@pytest.fixture
def small_sums(monkeypatch):
    """The small files stand in for the published ones: their sums become the expected ones."""
    monkeypatch.setattr(papers, "_GOWALLA_SHA256",
                        {name: hashlib.sha256(data).hexdigest() for name, data in SMALL.items()})


@pytest.fixture
def no_local_data(monkeypatch, tmp_path):
    """No Gowalla copy anywhere; the cache in tmp_path; downloads go to a closed local port."""
    monkeypatch.delenv("BPR_NUMBA_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(_files, "DOWNLOAD_TIMEOUT", 5.0)
    monkeypatch.setenv("BPR_NUMBA_GOWALLA_URL", f"http://127.0.0.1:{closed_port()}/nothing-here/")
    return tmp_path / "xdg" / "bpr-numba"


@pytest.fixture
def server(http_server):
    """The shared local server (conftest), with ``url`` the address of its "gowalla/" folder."""
    http_server.url += "/gowalla/"
    return http_server


def write_small(folder, alter=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in SMALL.items():
        (folder / name).write_bytes(data.replace(b"0 4", b"0 9") if name == alter else data)
    return folder


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def check_small(train, test):
    for X in (train, test):
        assert X.shape == GOWALLA_SHAPE and X.dtype == np.float32 and X.indices.dtype == np.int32
    assert train[0].indices.tolist() == [1, 2, 3] and train[1].indices.tolist() == [40980]
    assert test[29857].indices.tolist() == [1] and test.nnz == 4 and train.nnz == 6


def test_data_home_then_environment(tmp_path, no_local_data, small_sums, monkeypatch):
    write_small(tmp_path / "home" / "gowalla")
    env = tmp_path / "env"
    write_small(env / "gowalla", alter="test.txt")  # would fail its sum if it were read
    monkeypatch.setenv("BPR_NUMBA_DATA", str(env))
    check_small(*load_gowalla(data_home=tmp_path / "home", download=False))
    with pytest.raises(ValueError, match=r"test\.txt .*damaged or not the published one: SHA-256"):
        load_gowalla(download=False)
    assert listing(no_local_data) == []


def test_a_local_file_that_is_not_the_published_one_is_refused(tmp_path, no_local_data):
    write_small(tmp_path / "gowalla")  # the real sums: the small files do not match them
    with pytest.raises(ValueError, match=r"train\.txt .*expected 7244696f"):
        load_gowalla(data_home=tmp_path)


def test_not_found_lists_every_place_and_hints(tmp_path, no_local_data, monkeypatch):
    write_small(tmp_path / "itself")  # train.txt directly: the gowalla folder was passed itself
    (tmp_path / "env" / "gowalla").mkdir(parents=True)
    (tmp_path / "env" / "gowalla" / "train.txt").write_bytes(SMALL["train.txt"])
    monkeypatch.setenv("BPR_NUMBA_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_gowalla(data_home=tmp_path / "itself", download=False)
    message = str(info.value)
    assert "looks like gowalla itself: pass its parent folder" in message
    assert f"{tmp_path / 'env' / 'gowalla'}/ lacks test.txt" in message
    assert str(no_local_data) in message and "download=False" in message
    assert "BPR_NUMBA_GOWALLA_URL" in message
    with pytest.raises(TypeError, match="download must be True or False"):
        load_gowalla(download="yes")


def test_download_verifies_caches_and_is_reused(no_local_data, small_sums, server, monkeypatch):
    write_small(server.root / "gowalla")
    monkeypatch.setenv("BPR_NUMBA_GOWALLA_URL", server.url)
    check_small(*load_gowalla())
    assert sorted(server.requests) == ["/gowalla/test.txt", "/gowalla/train.txt"]
    assert listing(no_local_data) == ["gowalla", "gowalla/test.txt", "gowalla/train.txt"]
    assert (no_local_data / "gowalla" / "train.txt").read_bytes() == SMALL["train.txt"]
    check_small(*load_gowalla(download=False))  # from the cache, no request
    assert len(server.requests) == 2
    (no_local_data / "gowalla" / "test.txt").unlink()  # only the missing file is fetched again
    check_small(*load_gowalla())
    assert server.requests[2:] == ["/gowalla/test.txt"]


def test_a_tampered_download_is_refused_and_not_kept(no_local_data, small_sums, server, monkeypatch):
    write_small(server.root / "gowalla", alter="test.txt")
    monkeypatch.setenv("BPR_NUMBA_GOWALLA_URL", server.url.rstrip("/"))  # a missing "/" is added
    with pytest.raises(ValueError, match=r"test\.txt downloaded from .* is not the published one.*"
                                         r"Nothing was saved"):
        load_gowalla()
    assert listing(no_local_data) == ["gowalla", "gowalla/train.txt"]  # the good one stays, verified
    assert not any(".part" in name for name in listing(no_local_data))


def test_failed_downloads_leave_nothing(no_local_data, small_sums, server, monkeypatch):
    monkeypatch.setenv("BPR_NUMBA_GOWALLA_URL", server.url)  # nothing served: 404
    with pytest.raises(DatasetNotFoundError, match="the download failed: .*404"):
        load_gowalla()
    assert not no_local_data.parent.exists()  # not even the cache folder
    write_small(server.root / "gowalla")
    monkeypatch.setattr(papers, "_GOWALLA_MAX_BYTES", 10)
    with pytest.raises(DatasetNotFoundError, match="sent more than 10 bytes"):
        load_gowalla()
    assert not no_local_data.parent.exists()
    monkeypatch.setenv("BPR_NUMBA_GOWALLA_URL", f"http://127.0.0.1:{closed_port()}/gowalla/")
    with pytest.raises(DatasetNotFoundError, match="download failed"):
        load_gowalla()
    assert not no_local_data.parent.exists()
