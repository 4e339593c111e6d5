"""Tests of bpr_numba.data: IdMap, and Interactions from arrays, pandas and CSV/TSV files.

``from_arrays`` is checked against :func:`reference_events`, a dict-based twin
written to be obviously right; ``from_pandas`` and ``from_csv`` are checked
against ``from_arrays`` on the same events.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from bpr_numba import Interactions
from bpr_numba.data import DUPLICATE_POLICIES, IdMap, _event_order

FAST = settings(deadline=None, max_examples=25)
POLICIES = (None,) + DUPLICATE_POLICIES
CANONICAL_INT = re.compile(r"-?[1-9][0-9]*|0")


# --------------------------------------------------------------------------- reference


def reference_events(users, items, ratings=None, timestamps=None, min_rating=None,
                     duplicates=None):
    """Slow twin of ``from_arrays``: ``(user ids, item ids, {(u, i): (value, timestamp)})``.

    Ids are the sorted distinct raw ids; the dict maps each kept (user, item)
    pair to its merged value and timestamp (None without timestamps).
    """
    policy = duplicates or ("last" if ratings is not None else "sum")
    positions = {}
    for position, pair in enumerate(zip(users, items)):
        positions.setdefault(pair, []).append(position)
    merged = {}
    for pair, events in positions.items():
        if timestamps is not None:  # earliest first; ties keep the file order
            events = sorted(events, key=lambda p: (timestamps[p], p))
        values = [1.0 if ratings is None else float(ratings[p]) for p in events]
        if policy == "sum":
            value = sum(values)
        elif policy == "max":
            value = max(values)
        elif policy == "first":
            value = values[0]
        else:
            value = values[-1]
        chosen = events[0] if policy == "first" else events[-1]
        stamp = None if timestamps is None else timestamps[chosen]
        # A merged value of 0 is no interaction (as a sparse matrix's zeros).
        if value != 0 and (min_rating is None or value >= min_rating):
            merged[pair] = (value, stamp)
    return sorted(set(users)), sorted(set(items)), merged


def assert_matches_reference(X, users, items, ratings=None, timestamps=None, min_rating=None,
                             duplicates=None):
    user_ids, item_ids, merged = reference_events(users, items, ratings, timestamps, min_rating,
                                                  duplicates)
    assert X.user_ids.tolist() == user_ids
    assert X.item_ids.tolist() == item_ids
    assert X.shape == (len(user_ids), len(item_ids))
    m = X.matrix
    assert m.has_canonical_format and m.data.dtype == np.float32
    assert m.indices.dtype == np.int32 and m.indptr.dtype == np.int32
    got = {}
    for row in range(m.shape[0]):
        for k in range(m.indptr[row], m.indptr[row + 1]):
            stamp = None if X.timestamps is None else X.timestamps[k].item()
            got[(user_ids[row], item_ids[m.indices[k]])] = (float(m.data[k]), stamp)
    assert got == merged


def assert_same(a, b):
    """Two Interactions hold the same ids, matrix and timestamps (dtypes included)."""
    assert a.user_map == b.user_map and a.item_map == b.item_map
    assert a.shape == b.shape
    for name in ("data", "indices", "indptr"):
        x, y = getattr(a.matrix, name), getattr(b.matrix, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a.timestamps is None) == (b.timestamps is None)
    if a.timestamps is not None:
        assert a.timestamps.dtype == b.timestamps.dtype
        assert np.array_equal(a.timestamps, b.timestamps)


# --------------------------------------------------------------------------- strategies

INT_IDS = st.integers(-3, 6)
# Ids longer than 8 bytes whose second 8-byte word sorts against the first one.
LONG_IDS = ["user_000000001", "user_0000000010", "aaaaaaaa_z", "bbbbbbbb_a", "bbbbbbbb"]
STR_IDS = st.sampled_from(["a", "b", "B", "ab", "é", "zz", "中文", "7"] + LONG_IDS)


@st.composite
def event_lists(draw, ids, with_ratings, with_timestamps):
    n = draw(st.integers(0, 30))
    users = draw(st.lists(ids, min_size=n, max_size=n))
    items = draw(st.lists(ids, min_size=n, max_size=n))
    ratings = timestamps = None
    if with_ratings:  # halves: float32 sums are exact, so the twin can add in Python
        ratings = [x / 2 for x in draw(st.lists(st.integers(-4, 10), min_size=n, max_size=n))]
    if with_timestamps:  # few values: many ties
        stamps = st.integers(0, 3) if draw(st.booleans()) else st.sampled_from([0.5, 1.0, 2.5])
        timestamps = draw(st.lists(stamps, min_size=n, max_size=n))
    return users, items, ratings, timestamps


# --------------------------------------------------------------------------- IdMap


@pytest.mark.parametrize("raw", [[30, -2, 7, 30, 5], ["b", "é", "a", "b", "user_0000000011"]])
def test_idmap_from_raw_round_trip(raw):
    id_map, codes = IdMap.from_raw(raw)
    assert id_map.ids.tolist() == sorted(set(raw))
    assert codes.dtype == np.int32
    assert id_map.to_raw(codes).tolist() == raw
    assert id_map.to_index(raw).tolist() == codes.tolist()
    assert id_map.to_index(raw[1]) == codes[1]
    assert isinstance(id_map.to_index(raw[1]), int)


def test_idmap_unsorted_ids_keep_their_order():
    id_map = IdMap(["c", "a", "b"])
    assert id_map.to_index(["a", "b", "c"]).tolist() == [1, 2, 0]
    assert id_map.to_raw([0, 1, 2]).tolist() == ["c", "a", "b"]
    ints = IdMap([10, -1, 4])
    assert ints.to_index([4, 10, -1]).tolist() == [2, 0, 1]


def test_idmap_to_raw_keeps_padding():
    assert IdMap([5, 9]).to_raw([1, -1]).tolist() == [9, -1]
    assert IdMap(["x", "y"]).to_raw([-1, 0]).tolist() == ["", "x"]


def test_idmap_unknown_ids_raise_key_error_naming_them():
    id_map = IdMap([1, 2, 3])
    with pytest.raises(KeyError, match=r"unknown raw id\(s\) 7, 9"):
        id_map.to_index([1, 7, 9])
    with pytest.raises(KeyError, match="'zz'"):
        IdMap(["a", "b"]).to_index(["a", "zz"])
    with pytest.raises(KeyError, match="and 2 more"):
        id_map.to_index(list(range(10, 17)))


@pytest.mark.parametrize("ids", [[3, 1, 3], ["a", "b", "a"]])
def test_idmap_rejects_duplicates(ids):
    with pytest.raises(ValueError, match="distinct"):
        IdMap(ids)


# --------------------------------------------------------------------------- from_arrays


@pytest.mark.parametrize("duplicates", POLICIES)
@pytest.mark.parametrize("with_timestamps", [False, True])
@pytest.mark.parametrize("ids", [INT_IDS, STR_IDS], ids=["int ids", "str ids"])
@FAST
@given(data=st.data())
def test_from_arrays_matches_reference_with_ratings(duplicates, with_timestamps, ids, data):
    users, items, ratings, timestamps = data.draw(event_lists(ids, True, with_timestamps))
    min_rating = data.draw(st.sampled_from([None, 1.0, 2.5]))
    X = Interactions.from_arrays(users, items, ratings, timestamps, min_rating=min_rating,
                                 duplicates=duplicates)
    assert_matches_reference(X, users, items, ratings, timestamps, min_rating, duplicates)


@pytest.mark.parametrize("duplicates", POLICIES)
@pytest.mark.parametrize("with_timestamps", [False, True])
@FAST
@given(data=st.data())
def test_from_arrays_matches_reference_without_ratings(duplicates, with_timestamps, data):
    ids = data.draw(st.sampled_from([INT_IDS, STR_IDS]))
    users, items, _, timestamps = data.draw(event_lists(ids, False, with_timestamps))
    X = Interactions.from_arrays(users, items, timestamps=timestamps, duplicates=duplicates)
    assert_matches_reference(X, users, items, None, timestamps, None, duplicates)


def test_from_arrays_default_policies_on_a_known_case():
    users, items = ["u", "u", "u", "v"], [1, 1, 2, 1]
    counts = Interactions.from_arrays(users, items)
    assert counts.matrix.toarray().tolist() == [[2, 1], [1, 0]]
    rated = Interactions.from_arrays(users, items, [5, 3, 4, 1], [20, 10, 0, 0])
    assert rated.matrix.toarray().tolist() == [[5, 4], [1, 0]]  # the latest rating wins
    assert rated.timestamps.tolist() == [20, 0, 0]
    assert rated.timestamps.dtype == np.int64


def test_from_arrays_timestamp_ties_keep_event_order():
    X = Interactions.from_arrays([0, 0, 0], [0, 0, 0], [1, 2, 3], [5, 5, 4], duplicates="last")
    assert X.matrix.data.tolist() == [2.0]
    X = Interactions.from_arrays([0, 0, 0], [0, 0, 0], [1, 2, 3], [5, 5, 4], duplicates="first")
    assert X.matrix.data.tolist() == [3.0]


@pytest.mark.parametrize("n_keys", [50, 2**62])  # composite sort, then argsort fallback
@given(keys=st.lists(st.integers(0, 49), max_size=40), data=st.data())
@FAST
def test_event_order_is_lexsort(n_keys, keys, data):
    stamps = np.array(data.draw(st.lists(st.integers(0, 3), min_size=len(keys),
                                         max_size=len(keys))), np.int64)
    keys = np.array(keys, np.int64)
    for timestamps in (None, stamps):
        expected = (np.argsort(keys, kind="stable") if timestamps is None
                    else np.lexsort((timestamps, keys)))
        order, ordered = _event_order(keys.copy(), n_keys, timestamps)
        assert order.tolist() == expected.tolist()
        assert ordered.tolist() == keys[expected].tolist()


@pytest.mark.parametrize("call, error, message", [
    (lambda: Interactions.from_arrays([1, 2], [1]), ValueError, "one length; got 2 and 1"),
    (lambda: Interactions.from_arrays([1, 2], [1, 2], [1.0, np.nan]), ValueError,
     r"ratings holds 1 NaN or infinite value\(s\) \(first at event 1\)"),
    (lambda: Interactions.from_arrays([1, 2], [1, 2], [1.0]), ValueError,
     "ratings must be 2 numbers"),
    (lambda: Interactions.from_arrays([1, 2], [1, 2], min_rating=3), ValueError,
     "min_rating needs ratings"),
    (lambda: Interactions.from_arrays([1], [1], duplicates="mean"), ValueError,
     "duplicates must be one of sum, last, first, max; got 'mean'"),
    (lambda: Interactions.from_arrays([1, None], [1, 2]), TypeError,
     "users holds NoneType values such as None"),
    (lambda: Interactions.from_arrays([1.5, 2.0], [1, 2]), ValueError,
     "users holds non-integer numbers"),
    (lambda: Interactions.from_arrays([1, 2], [1, 2], timestamps=[0.0, np.inf]), ValueError,
     "timestamps holds NaN or infinite"),
    (lambda: Interactions.from_arrays([[1, 2]], [[1, 2]]), ValueError, "users must be 1-D"),
])
def test_from_arrays_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_from_arrays_float_ids_that_are_ints_become_int64():
    X = Interactions.from_arrays(np.array([2.0, 1.0]), [0, 0])
    assert X.user_ids.dtype == np.int64 and X.user_ids.tolist() == [1, 2]


# --------------------------------------------------------------------------- from_pandas


def test_from_pandas_matches_from_arrays():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"u": ["b", "a", "b", "c"], "i": [3, 1, 3, 2],
                          "r": [1.0, 4.0, 5.0, 2.5], "t": [3, 1, 2, 0]})
    got = Interactions.from_pandas(frame, "u", "i", "r", "t", duplicates="first")
    assert_same(got, Interactions.from_arrays(frame.u.to_numpy(), frame.i.to_numpy(),
                                              frame.r.to_numpy(), frame.t.to_numpy(),
                                              duplicates="first"))
    assert got.matrix.toarray().tolist() == [[4, 0, 0], [0, 0, 5], [0, 2.5, 0]]


def test_from_pandas_datetime_column_becomes_unix_seconds():
    pd = pytest.importorskip("pandas")
    when = pd.to_datetime(["2020-01-01 00:00:00", "1970-01-01 00:01:40"])
    frame = pd.DataFrame({"u": [1, 2], "i": [1, 1], "t": when})
    X = Interactions.from_pandas(frame, "u", "i", timestamp_col="t")
    assert X.timestamps.dtype == np.int64
    assert X.timestamps.tolist() == [1577836800, 100]


def test_from_pandas_unknown_column_lists_columns():
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match=r"'rating' is not in the DataFrame.*\['u', 'i'\]"):
        Interactions.from_pandas(pd.DataFrame({"u": [1], "i": [2]}), "u", "i", "rating")


# --------------------------------------------------------------------------- from_csv


def write(path, text, encoding="utf-8"):
    path = Path(path)
    path.write_bytes(text.encode(encoding))
    return path


def expected_ids(texts):
    """What from_csv makes of an id column: ints when all are canonical ints, else str."""
    if all(CANONICAL_INT.fullmatch(t) and abs(int(t)) < 2**63 for t in texts):
        return [int(t) for t in texts]
    return list(texts)


CSV_IDS = st.sampled_from(["1", "2", "10", "-3", "0", "a", "é", "x y", "007", "中"] + LONG_IDS)
INT_TEXT_IDS = st.sampled_from(["1", "2", "10", "-3", "0", "9223372036854775807"])


@pytest.mark.parametrize("sep", [",", "\t"])
@FAST
@given(data=st.data())
def test_from_csv_matches_from_arrays(sep, data):
    ids = data.draw(st.sampled_from([CSV_IDS, INT_TEXT_IDS]))
    users, items, ratings, timestamps = data.draw(
        event_lists(ids, data.draw(st.booleans()), data.draw(st.booleans())))
    duplicates = data.draw(st.sampled_from(POLICIES))
    chunk_rows = data.draw(st.sampled_from([1, 2, 3, 7, 1_000_000]))
    columns = [("user", users), ("item", items)]
    if ratings is not None:
        columns.append(("rating", [repr(r) for r in ratings]))
    if timestamps is not None:
        columns.append(("time", [repr(t) for t in timestamps]))
    lines = [sep.join(name for name, _ in columns)]
    lines += [sep.join(str(values[k]) for _, values in columns) for k in range(len(users))]
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "events.csv", "\n".join(lines) + "\n")
        got = Interactions.from_csv(path, "user", "item",
                                    None if ratings is None else "rating",
                                    None if timestamps is None else "time",
                                    duplicates=duplicates, chunk_rows=chunk_rows)
    if timestamps is not None:  # int64 unless one is a float (also when there are none)
        timestamps = np.array(timestamps, np.float64 if any(isinstance(t, float)
                                                            for t in timestamps) else np.int64)
    assert_same(got, Interactions.from_arrays(expected_ids(users), expected_ids(items), ratings,
                                              timestamps, duplicates=duplicates))


def test_from_csv_tsv_with_header_false_and_positions(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
                                      "196\t377\t1\t878887116\n")
    X = Interactions.from_csv(path, 0, 1, 2, 3, header=False)
    assert_same(X, Interactions.from_arrays([196, 186, 196], [242, 302, 377], [3, 3, 1],
                                            [881250949, 891717742, 878887116]))
    assert X.user_ids.dtype == np.int64


def test_from_csv_positions_work_with_a_header_too(tmp_path):
    path = write(tmp_path / "e.csv", "user,item\nb,1\na,2\n")
    assert_same(Interactions.from_csv(path, 0, "item"),
                Interactions.from_arrays(["b", "a"], [1, 2]))


def test_from_csv_later_chunk_with_a_string_id_makes_the_column_str(tmp_path):
    rows = [f"{u},{i},1" for u, i in zip(range(20, 0, -1), range(20))] + ["u7,3,2", "15,3,4"]
    path = write(tmp_path / "e.csv", "user,item,rating\n" + "\n".join(rows) + "\n")
    X = Interactions.from_csv(path, "user", "item", "rating", chunk_rows=4)
    users = [r.split(",")[0] for r in rows]
    assert X.user_ids.dtype.kind == "U" and X.item_ids.dtype == np.int64
    assert X.user_ids.tolist() == sorted(set(users))  # "10" < "2" as strings
    assert_same(X, Interactions.from_arrays(users, [int(r.split(",")[1]) for r in rows],
                                            [float(r.split(",")[2]) for r in rows]))


def test_from_csv_string_ids_longer_than_eight_bytes(tmp_path):
    users = ["user_000000010", "bbbbbbbb_a", "aaaaaaaa_z", "user_000000010", "u", "bbbbbbbb"]
    items = ["item_with_a_long_name_b", "item_with_a_long_name_a", "i", "i", "i", "j"]
    text = "u,i\n" + "".join(f"{u},{i}\n" for u, i in zip(users, items))
    X = Interactions.from_csv(write(tmp_path / "e.csv", text), "u", "i", chunk_rows=2)
    assert_same(X, Interactions.from_arrays(users, items))


def test_from_csv_format_details(tmp_path):
    """BOM, CRLF, spaces and quotes around fields, blank lines, no final newline."""
    text = ('\ufeff"user" , item,rating\r\n'
            ' u1 ,"i 1", 4\r\n'
            '\r\n'
            'u2,\t"i2",  2.5 \r\n'
            '   \r\n'
            'u1,i2,1e0')
    X = Interactions.from_csv(write(tmp_path / "e.csv", text), "user", "item", "rating",
                              chunk_rows=2)
    assert_same(X, Interactions.from_arrays(["u1", "u2", "u1"], ["i 1", "i2", "i2"],
                                            [4.0, 2.5, 1.0]))


def test_from_csv_crlf_line_ends_are_not_part_of_the_last_field(tmp_path):
    path = write(tmp_path / "e.csv", "r,u,i\r\n1,7,a\r\n2,8,b\r\n")
    X = Interactions.from_csv(path, "u", "i", "r")
    assert X.item_ids.tolist() == ["a", "b"] and X.user_ids.tolist() == [7, 8]


def test_from_csv_int_ids_must_be_canonical(tmp_path):
    path = write(tmp_path / "e.csv", "u,i\n007,1\n7,+2\n-0,3\n")
    X = Interactions.from_csv(path, "u", "i")
    assert X.user_ids.tolist() == ["-0", "007", "7"]
    assert X.item_ids.tolist() == ["+2", "1", "3"]
    big = write(tmp_path / "big.csv", "u,i\n9223372036854775807,1\n9223372036854775808,1\n")
    assert Interactions.from_csv(big, "u", "i").user_ids.dtype.kind == "U"


def test_from_csv_timestamps_become_float_when_one_is_not_an_int(tmp_path):
    path = write(tmp_path / "e.csv", "u,i,t\n1,1,+5\n2,1,007\n3,1,2.5\n")
    X = Interactions.from_csv(path, "u", "i", timestamp_col="t", chunk_rows=2)
    assert X.timestamps.dtype == np.float64 and X.timestamps.tolist() == [5.0, 7.0, 2.5]


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "cp1252"])
def test_from_csv_non_ascii_ids_are_sorted_as_str(tmp_path, encoding):
    # In cp1252 "Ÿ" is byte 0x9f but U+0178: byte order is not str order.
    users = ["ü", "z", "é", "a", "Ÿ" if encoding == "cp1252" else "ÿ"]
    text = "u,i,r\n" + "".join(f"{u},1,{k}\n" for k, u in enumerate(users))
    X = Interactions.from_csv(write(tmp_path / "e.csv", text, encoding), "u", "i", "r",
                              encoding=encoding, chunk_rows=2)
    assert_same(X, Interactions.from_arrays(users, [1] * 5, range(5)))


def test_from_csv_header_only_file_is_empty(tmp_path):
    X = Interactions.from_csv(write(tmp_path / "e.csv", "u,i,r\n\n"), "u", "i", "r")
    assert X.shape == (0, 0) and X.nnz == 0
    assert_same(X, Interactions.from_arrays([], [], []))


def test_from_csv_min_rating_and_duplicates(tmp_path):
    path = write(tmp_path / "e.csv", "u,i,r,t\na,x,5,2\na,x,1,3\nb,x,4,1\nb,y,2,1\n")
    X = Interactions.from_csv(path, "u", "i", "r", "t", min_rating=4, duplicates="max")
    assert X.matrix.toarray().tolist() == [[5, 0], [4, 0]]
    assert X.timestamps.tolist() == [3, 1]
    assert X.item_ids.tolist() == ["x", "y"]  # dropped interactions keep their ids


def _lines(n_good=10):
    return ["user,item,rating,time"] + [f"u{k},i{k % 3},{k % 5 + 1},{100 + k}"
                                        for k in range(n_good)]


@pytest.mark.parametrize("bad, message", [
    ("u1,i1,4", r"expected 4 fields separated by ',', found 3"),
    ("u1,i1,4,5,6", "found 5"),
    (",i1,4,5", "empty user id in column 'user'"),
    ("u1,  ,4,5", "empty item id in column 'item'"),
    ("u1,i1,four,5", "rating 'four' in column 'rating' is not a number"),
    ("u1,i1,nan,5", "rating 'nan' in column 'rating' is not a finite float32 number"),
    ("u1,i1,1e39,5", "not a finite float32 number"),
    ("u1,i1,4,", "empty timestamp in column 'time'"),
    ("u1,i1,4,soon", "timestamp 'soon' in column 'time' is not a number"),
])
@pytest.mark.parametrize("chunk_rows", [3, 1_000_000])
def test_from_csv_malformed_line_names_file_and_line(tmp_path, bad, message, chunk_rows):
    lines = _lines()
    lines[3:3] = ["", "  "]  # blank lines count in line numbers
    lines.insert(9, bad)  # line 10 of the file
    path = write(tmp_path / "bad.csv", "\n".join(lines) + "\n")
    with pytest.raises(ValueError) as info:
        Interactions.from_csv(path, "user", "item", "rating", "time", chunk_rows=chunk_rows)
    text = str(info.value)
    assert text.startswith(f"{path}, line 10: ")
    assert re.search(message, text)
    assert text.endswith(f"the line is {bad!r}.")


def test_from_csv_reports_the_earliest_bad_line_of_a_chunk(tmp_path):
    lines = _lines()
    lines[4] = "u1,i1,bad,5"
    lines[6] = ",i1,4,5"
    lines[8] = "u1,i1,4,soon"
    with pytest.raises(ValueError, match="line 5: rating 'bad'"):
        Interactions.from_csv(write(tmp_path / "e.csv", "\n".join(lines)), "user", "item",
                              "rating", "time")


def test_from_csv_without_header_counts_from_line_one(tmp_path):
    path = write(tmp_path / "e.csv", "1,2\n3,4\n5\n")
    with pytest.raises(ValueError, match=r"line 3: expected 2 fields"):
        Interactions.from_csv(path, 0, 1, header=False)


def test_from_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        Interactions.from_csv(tmp_path / "nope.csv", "user", "item")


def test_from_csv_unknown_column_lists_the_header(tmp_path):
    path = write(tmp_path / "e.csv", "user\titem\tscore\nu\ti\t1\n")
    with pytest.raises(ValueError, match=r"rating_col='rating' is not a column of .*e\.csv; "
                                         r"its header has columns \['user', 'item', 'score'\]"):
        Interactions.from_csv(path, "user", "item", "rating")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"user_col": "user", "item_col": 5}, ValueError, "item_col=5 is not a column position"),
    ({"user_col": "user", "item_col": "item", "header": False}, ValueError,
     "with header=False columns are integer positions"),
    ({"user_col": "user", "item_col": 1.0}, TypeError, "item_col must be a column name"),
    ({"user_col": None, "item_col": "item"}, ValueError, "user_col is required"),
    ({"user_col": "user", "item_col": "item", "sep": "::"}, ValueError,
     "sep must be one character"),
    ({"user_col": "user", "item_col": "item", "chunk_rows": 0}, ValueError,
     r"chunk_rows must be >= 1"),
    ({"user_col": "user", "item_col": "item", "header": "yes"}, TypeError,
     "header must be True or False"),
    ({"user_col": "user", "item_col": "item", "encoding": "utf-16"}, ValueError,
     "encoding must be ASCII-compatible"),
    ({"user_col": "user", "item_col": "item", "duplicates": "mean"}, ValueError,
     "duplicates must be one of"),
    ({"user_col": "user", "item_col": "item", "min_rating": 3}, ValueError,
     "min_rating needs ratings"),
])
def test_from_csv_bad_arguments(tmp_path, kwargs, error, message):
    path = write(tmp_path / "e.csv", "user,item\nu,i\n")
    with pytest.raises(error, match=message):
        Interactions.from_csv(path, **kwargs)


def test_from_csv_empty_file_needs_a_header(tmp_path):
    with pytest.raises(ValueError, match="is empty; expected a header line"):
        Interactions.from_csv(write(tmp_path / "e.csv", ""), "user", "item")
    X = Interactions.from_csv(write(tmp_path / "n.csv", "\n\n"), 0, 1, header=False)
    assert X.shape == (0, 0)


def test_from_csv_does_not_import_pandas():
    source = (Path(__file__).resolve().parents[1] / "bpr_numba" / "_csv.py").read_text()
    assert "pandas" not in re.sub(r'""".*?"""', "", source, flags=re.S)


@FAST
@given(st.lists(st.binary(min_size=1, max_size=20).map(lambda b: b.rstrip(b"\0") or b"x"),
                max_size=30))
def test_string_ids_packed_in_words_sort_and_unique_as_numpy_does(values):
    from bpr_numba._csv import _bytes_to_words, _unique_words, _words_to_bytes

    array = np.array(values, dtype="S20")
    unique, inverse = _unique_words(_bytes_to_words(array))
    expected, expected_inverse = np.unique(array, return_inverse=True)
    assert _words_to_bytes(unique).tolist() == expected.tolist()
    assert inverse.tolist() == expected_inverse.reshape(-1).tolist()


@pytest.mark.parametrize("chunk_rows", [1, 5, 64, 10_000])
def test_from_csv_with_tiny_read_buffer_and_scan_blocks(monkeypatch, tmp_path, chunk_rows):
    """Buffer growth, carried-over bytes and block scans, forced on a small file."""
    from bpr_numba import _csv

    monkeypatch.setattr(_csv, "_READ_SLACK", 16)
    monkeypatch.setattr(_csv, "_SCAN_BLOCK", 7)
    rng = np.random.default_rng(chunk_rows)
    n = 300
    users = [f"u{k}" * int(rng.integers(1, 4)) for k in rng.integers(0, 40, n)]
    items = rng.integers(0, 10**int(rng.integers(1, 6)), n).tolist()
    ratings = rng.integers(1, 6, n).tolist()
    lines = ["user,item,rating"] + [f"{u},{i},{r}" for u, i, r in zip(users, items, ratings)]
    lines[100:100] = [""]  # line 101 is blank
    path = write(tmp_path / "e.csv", "\r\n".join(lines))
    X = Interactions.from_csv(path, "user", "item", "rating", chunk_rows=chunk_rows)
    assert_same(X, Interactions.from_arrays(users, items, ratings))
    lines[250] = "u1,2"
    path = write(tmp_path / "bad.csv", "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 251: expected 3 fields"):
        Interactions.from_csv(path, "user", "item", "rating", chunk_rows=chunk_rows)


def test_from_csv_explicit_separator_and_bad_encoding(tmp_path):
    path = write(tmp_path / "e.csv", "u;i;r\na;x,y;1\nb;z;2\n")
    X = Interactions.from_csv(path, "u", "i", "r", sep=";")
    assert X.item_ids.tolist() == ["x,y", "z"]
    path.write_bytes(b"u,i\n\xe9t\xe9,1\n")  # Latin-1 bytes in a file read as UTF-8
    with pytest.raises(ValueError, match="a user id is not valid utf-8 text"):
        Interactions.from_csv(path, "u", "i")
    assert Interactions.from_csv(path, "u", "i", encoding="latin-1").user_ids.tolist() == ["été"]


def test_zeros_are_no_interactions_and_the_splits_do_not_count_them():
    from bpr_numba.split import random_split

    X = Interactions.from_arrays(["a", "a", "b", "b", "b"], ["x", "y", "x", "y", "z"],
                                 ratings=[0, 5, 1, 0, 0], timestamps=[1, 2, 3, 4, 5])
    assert X.nnz == 2 and X.timestamps.tolist() == [2, 3]
    assert X.item_ids.tolist() == ["x", "y", "z"]  # ids of zero events stay in the maps
    train, test = random_split(X, 0.5, random_state=0)
    assert train.nnz == 2 and test.nnz == 0  # one interaction each: both stay in train
    counts = Interactions.from_arrays(["a", "a"], ["x", "x"], ratings=[2, -2], duplicates="sum")
    assert counts.nnz == 0
    M = sp.csr_matrix((np.array([0, 3, 0, 4], np.float32), np.array([0, 1, 0, 2]),
                       np.array([0, 2, 4])), shape=(2, 3))
    Y = Interactions(M, timestamps=np.array([10, 11, 12, 13]))
    assert Y.nnz == 2 and Y.timestamps.tolist() == [11, 13]
    assert Y.matrix.toarray().tolist() == [[0, 3, 0], [0, 0, 4]]


def test_missing_or_mixed_ids_and_huge_unsigned_ids_are_refused():
    late_none = np.array(["u"] * 1500 + [None], dtype=object)
    with pytest.raises(TypeError, match="NoneType values such as None"):
        Interactions.from_arrays(late_none, np.arange(1501))
    with pytest.raises(TypeError, match="mixes int and str"):
        Interactions.from_arrays(np.array([1, "1"], dtype=object), [0, 1])
    with pytest.raises(ValueError, match="above 2\\*\\*63 - 1"):
        Interactions.from_arrays(np.array([2**63 + 5], np.uint64), [0])
    objects = Interactions.from_arrays(np.array([3, 1], dtype=object), ["a", "b"])
    assert objects.user_ids.dtype == np.int64 and objects.user_ids.tolist() == [1, 3]


def test_from_pandas_refuses_missing_timestamps():
    pd = pytest.importorskip("pandas")  # in the test extra: runs in CI
    df = pd.DataFrame({"u": ["a", "b"], "i": ["x", "y"],
                       "t": pd.to_datetime(["2024-01-01", None])})
    with pytest.raises(ValueError, match="column 't' has 1 missing timestamp.*row 1"):
        Interactions.from_pandas(df, "u", "i", timestamp_col="t")
