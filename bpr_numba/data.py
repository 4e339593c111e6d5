"""Your own data: raw ids mapped to contiguous indices, and the interaction matrix.

``Interactions`` holds a users x items CSR matrix together with the raw ids of
its rows and columns (``IdMap``) and, optionally, one timestamp per stored
interaction. Build it from arrays, a pandas DataFrame or a CSV/TSV file; the
splits of :mod:`bpr_numba.split` take and return it, and a ``BPR`` fitted on
it answers in raw ids (``raw_ids=True``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

DUPLICATE_POLICIES = ("sum", "last", "first", "max")


class IdMap:
    """Raw ids (ints or strings) <-> contiguous indices ``0..n - 1``.

    Maps built from events (:meth:`from_raw`) number the ids in sorted order,
    so a map is fixed by the set of ids alone (the same file gives the same
    indices, whatever its row order). A lookup is a vectorised binary search.

    Parameters
    ----------
    ids : array-like of int or str, shape (n,)
        Distinct raw ids; ``ids[k]`` is the raw id of index ``k``.
    """

    def __init__(self, ids):
        ids = np.array(as_id_array(ids, "ids"))
        sorter = None
        if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
            sorter = np.argsort(ids, kind="stable")
            ordered = ids[sorter]
            dup = ordered[1:] == ordered[:-1]
            if dup.any():
                raise ValueError(
                    f"ids must be distinct; {ordered[1:][dup][0]!r} appears more than once."
                )
        self._ids = ids
        self._sorter = sorter
        self._ids.setflags(write=False)

    @classmethod
    def from_raw(cls, raw, name="ids"):
        """Map ``raw`` (one id per event); return ``(IdMap, codes int32)``."""
        raw = as_id_array(raw, name)
        ids, codes = np.unique(raw, return_inverse=True)
        return cls(ids), _index_array(codes.reshape(-1), len(ids))

    @property
    def ids(self):
        """ndarray of int64 or str, shape (n,): the raw id of each index (read-only)."""
        return self._ids

    def __len__(self):
        return int(self._ids.size)

    def __eq__(self, other):
        return (isinstance(other, IdMap) and self._ids.dtype.kind == other._ids.dtype.kind
                and np.array_equal(self._ids, other._ids))

    def __repr__(self):
        kind = "str" if self._ids.dtype.kind == "U" else "int"
        return f"IdMap({len(self)} {kind} ids)"

    def to_index(self, raw, name="ids"):
        """Indices of raw ids; unknown ids raise ``KeyError`` naming them.

        Returns an int (for a scalar) or an ndarray of int64.
        """
        scalar = np.ndim(raw) == 0
        values = np.atleast_1d(np.asarray(raw))
        if values.dtype.kind in "US" or self._ids.dtype.kind == "U":
            values = values.astype(str) if values.dtype.kind != "U" else values
            if self._ids.dtype.kind != "U":
                try:
                    values = values.astype(np.int64)
                except ValueError:
                    values = None
        elif values.dtype.kind in "iub" or (values.dtype.kind == "f"
                                            and np.all(values == np.round(values))):
            values = values.astype(np.int64)
        else:
            values = None
        if values is None:
            raise KeyError(f"{name} holds {raw!r}, which is not a known raw id.")
        pos = np.searchsorted(self._ids, values, sorter=self._sorter)
        if len(self):
            pos = np.minimum(pos, len(self) - 1)
            if self._sorter is not None:
                pos = self._sorter[pos]
            found = self._ids[pos] == values
        else:
            found = np.zeros(values.shape, bool)
        if not np.all(found):
            missing = values[~found]
            shown = ", ".join(repr(x.item()) for x in missing[:5])
            more = f" and {missing.size - 5} more" if missing.size > 5 else ""
            raise KeyError(
                f"{name} holds unknown raw id(s) {shown}{more}; the model knows {len(self)} "
                f"ids (e.g. {self._ids[:3].tolist()})."
            )
        return int(pos[0]) if scalar else pos.astype(np.int64)

    def to_raw(self, index):
        """Raw ids of indices; -1 (padding of ``recommend``) stays -1 for int ids and '' for str."""
        index = np.asarray(index)
        pad = index < 0
        out = self._ids[np.where(pad, 0, index)] if len(self) else np.zeros(index.shape,
                                                                              self._ids.dtype)
        if np.any(pad):
            out = out.copy()
            out[pad] = "" if self._ids.dtype.kind == "U" else -1
        return out


class Interactions:
    """A users x items matrix of interactions with raw ids and optional timestamps.

    Parameters
    ----------
    matrix : scipy.sparse matrix, shape (n_users, n_items)
        Stored values are ratings (or event counts); converted to canonical
        CSR with float32 data.
    user_ids, item_ids : IdMap or array-like, optional
        Raw ids of the rows and columns (default: ``0..n - 1``).
    timestamps : ndarray, shape (nnz,), optional
        One timestamp per stored value, in the CSR order of ``matrix``.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix of float32
    user_ids, item_ids : ndarray (raw ids by index)
    user_map, item_map : IdMap
    timestamps : ndarray of int64 or float64, shape (nnz,), or None
    """

    def __init__(self, matrix, user_ids=None, item_ids=None, timestamps=None):
        if not sp.issparse(matrix):
            raise TypeError(
                f"matrix must be a scipy.sparse matrix; got {type(matrix).__name__}. "
                "Use Interactions.from_arrays(users, items) for event lists."
            )
        csr = sp.csr_matrix(matrix, dtype=np.float32)
        if timestamps is not None:
            timestamps = np.asarray(timestamps)
            if timestamps.shape != (csr.nnz,):
                raise ValueError(
                    f"timestamps must have one entry per stored value ({csr.nnz}); got shape "
                    f"{timestamps.shape}."
                )
            if not csr.has_canonical_format:
                raise ValueError(
                    "timestamps need a canonical matrix (sorted indices, no duplicates), "
                    "so that they stay aligned with the stored values."
                )
        elif not csr.has_canonical_format:
            csr = csr.copy()
            csr.sum_duplicates()
        if csr.nnz and not np.all(csr.data != 0):
            # Explicit zeros are no interactions (the splits count stored values).
            keep = csr.data != 0
            if timestamps is not None:
                timestamps = timestamps[keep]
            csr = csr.copy()
            csr.eliminate_zeros()
        self.matrix = csr
        self.timestamps = timestamps
        self.user_map = _as_map(user_ids, csr.shape[0], "user_ids")
        self.item_map = _as_map(item_ids, csr.shape[1], "item_ids")

    # ------------------------------------------------------------ construction
    @classmethod
    def from_arrays(cls, users, items, ratings=None, timestamps=None, *, min_rating=None,
                    duplicates=None):
        """Build from parallel arrays of events.

        Parameters
        ----------
        users, items : array-like of int or str, shape (n,)
            Raw ids of each event's user and item.
        ratings : array-like of float, shape (n,), optional
            Without it each event counts 1.
        timestamps : array-like of int or float, shape (n,), optional
        min_rating : float, optional
            Keep the (merged) interactions with a rating ``>= min_rating``;
            needs ``ratings``. Ids of dropped interactions stay in the maps.
        duplicates : {"sum", "last", "first", "max"}, optional
            How repeated (user, item) events merge: "last"/"first" keep the
            latest/earliest event (by timestamp, else by position), "sum" adds
            the values and "max" keeps the largest; the merged timestamp is the
            chosen event's ("last"/"first") or the latest ("sum"/"max").
            Default "last" with ratings (a re-rating replaces the old one),
            "sum" without (counts of events).
        """
        user_map, user_codes = IdMap.from_raw(users, "users")
        item_map, item_codes = IdMap.from_raw(items, "items")
        return cls._from_codes(user_codes, user_map, item_codes, item_map, ratings, timestamps,
                               min_rating=min_rating, duplicates=duplicates)

    @classmethod
    def from_pandas(cls, df, user_col, item_col, rating_col=None, timestamp_col=None, *,
                    min_rating=None, duplicates=None):
        """Build from a pandas DataFrame's columns (see :meth:`from_arrays`)."""
        for col in (user_col, item_col, rating_col, timestamp_col):
            if col is not None and col not in df.columns:
                raise ValueError(
                    f"column {col!r} is not in the DataFrame; its columns are "
                    f"{list(df.columns)}."
                )

        def column(col):
            if col is None:
                return None
            values = df[col].to_numpy()
            if values.dtype.kind == "M":
                missing = np.isnat(values)
                if missing.any():
                    raise ValueError(
                        f"column {col!r} has {int(missing.sum())} missing timestamp(s) (NaT), "
                        f"the first at row {int(np.argmax(missing))}; drop or fill them first."
                    )
                values = values.astype("datetime64[s]").astype(np.int64)
            return values

        return cls.from_arrays(column(user_col), column(item_col), column(rating_col),
                               column(timestamp_col), min_rating=min_rating,
                               duplicates=duplicates)

    @classmethod
    def from_csv(cls, path, user_col, item_col, rating_col=None, timestamp_col=None, *, sep=None,
                 header=True, min_rating=None, duplicates=None, chunk_rows=1_000_000,
                 encoding="utf-8"):
        """Build from a CSV or TSV file, read in chunks with NumPy (pandas is not needed).

        The file is streamed ``chunk_rows`` lines at a time, and each chunk is
        parsed with whole-array NumPy operations (no Python work per line), so
        the file never sits whole in memory. The result equals
        :meth:`from_arrays` on the same events.

        Parameters
        ----------
        path : str or os.PathLike
            The file. A UTF-8 byte order mark is skipped.
        user_col, item_col : str or int
            Columns of the raw user and item ids: header names, or 0-based
            positions (the only choice when ``header=False``).
        rating_col, timestamp_col : str or int, optional
            Columns of the ratings (read as float32) and the timestamps (int64,
            or float64 when one of them is not an int).
        sep : str, optional
            The one-character field separator. Default: sniffed from the first
            line, ``"\\t"`` if it holds a tab, else ``","``.
        header : bool
            Whether the first line names the columns.
        min_rating, duplicates
            As in :meth:`from_arrays`.
        chunk_rows : int >= 1
            Lines read and parsed at a time; memory for parsing grows with it.
        encoding : str
            An ASCII-compatible encoding (UTF-8, Latin-1, ...) of the file.

        Returns
        -------
        Interactions

        Notes
        -----
        * An id column holds int64 ids when every one of its values is a
          canonical decimal int (as ``str(int)`` writes it: no ``+`` sign, no
          leading zeros, fits in int64); otherwise all its ids are strings (so
          ``"007"`` stays ``"007"``). The decision covers the whole file.
        * Spaces and tabs around a field are dropped, then one pair of double
          quotes around it. Quoting is not otherwise supported: a field cannot
          hold the separator, a newline or an escaped quote (``""``).
        * Blank lines are skipped (they still count in line numbers).

        Raises
        ------
        FileNotFoundError
            ``path`` does not exist.
        ValueError
            A column is not in the header (the message lists its columns), or a
            line is malformed: a wrong number of fields, an empty id, or a
            rating or timestamp that is not a finite number. The message names
            the file and the 1-based line number in the file, and shows the line.
        """
        from ._csv import read_events

        if duplicates is not None and duplicates not in DUPLICATE_POLICIES:
            raise ValueError(
                f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}; got {duplicates!r}."
            )
        if min_rating is not None and rating_col is None:
            raise ValueError("min_rating needs ratings; pass rating_col=.")
        user_ids, user_codes, item_ids, item_codes, ratings, timestamps = read_events(
            path, user_col, item_col, rating_col, timestamp_col, sep=sep, header=header,
            chunk_rows=chunk_rows, encoding=encoding)
        user_map, item_map = IdMap(user_ids), IdMap(item_ids)
        del user_ids, item_ids
        events = [user_codes, item_codes, ratings, timestamps]
        del user_codes, item_codes, ratings, timestamps  # _from_events frees them as it goes
        return cls._from_events(events, user_map, item_map, min_rating=min_rating,
                                duplicates=duplicates)

    @classmethod
    def _from_codes(cls, user_codes, user_map, item_codes, item_map, ratings, timestamps, *,
                    min_rating=None, duplicates=None):
        """Build from codes (indices into ``user_map`` and ``item_map``) of each event."""
        return cls._from_events([user_codes, item_codes, ratings, timestamps], user_map,
                                item_map, min_rating=min_rating, duplicates=duplicates)

    @classmethod
    def _from_events(cls, events, user_map, item_map, *, min_rating=None, duplicates=None):
        """:meth:`_from_codes` on ``events = [user_codes, item_codes, ratings, timestamps]``.

        The list is emptied, so when the caller holds no other reference (as in
        :meth:`from_csv`), each array is freed as soon as it has been used.
        """
        user_codes, item_codes, ratings, timestamps = events
        events.clear()
        n = user_codes.size
        if item_codes.size != n:
            raise ValueError(
                f"users and items must have one length; got {n} and {item_codes.size}."
            )
        values = None
        if ratings is not None:
            values = np.asarray(ratings)
            if values.dtype.kind not in "biuf" or values.shape != (n,):
                raise ValueError(
                    f"ratings must be {n} numbers (one per event); got dtype {values.dtype} "
                    f"and shape {values.shape}."
                )
            values = values.astype(np.float32, copy=False)  # never written to in place
            bad = ~np.isfinite(values)
            if bad.any():
                raise ValueError(
                    f"ratings holds {int(bad.sum())} NaN or infinite value(s) (first at event "
                    f"{int(np.argmax(bad))}); expected finite numbers."
                )
        elif min_rating is not None:
            raise ValueError("min_rating needs ratings; pass ratings= (or rating_col=).")
        del ratings
        if timestamps is not None:
            timestamps = np.asarray(timestamps)
            if timestamps.dtype.kind not in "iuf" or timestamps.shape != (n,):
                raise ValueError(
                    f"timestamps must be {n} numbers (one per event); got dtype "
                    f"{timestamps.dtype} and shape {timestamps.shape}."
                )
            if timestamps.dtype.kind == "f" and not np.isfinite(timestamps).all():
                raise ValueError("timestamps holds NaN or infinite values.")
            timestamps = timestamps.astype(np.float64 if timestamps.dtype.kind == "f"
                                           else np.int64, copy=False)
        if duplicates is None:
            duplicates = "last" if values is not None else "sum"
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(
                f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}; got {duplicates!r}."
            )
        n_users, n_items = len(user_map), len(item_map)
        # Memory matters here (from_csv's target is a few times the result): keys are
        # built in place, groups are boolean masks, and arrays are freed as soon as
        # they are replaced.
        keys = user_codes.astype(np.int64)
        keys *= n_items
        keys += item_codes
        del user_codes, item_codes
        order, keys = _event_order(keys, n_users * n_items, timestamps)
        values = np.ones(n, np.float32) if values is None else values[order]
        if timestamps is not None:
            timestamps = timestamps[order]
        del order
        first = np.ones(n, bool)  # the first event of each (user, item) pair
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        if n and not first.all():
            if duplicates == "sum":
                values = np.add.reduceat(values, np.flatnonzero(first)).astype(np.float32)
            elif duplicates == "max":
                values = np.maximum.reduceat(values, np.flatnonzero(first))
            last = np.ones(n, bool)  # the last (latest) event of each pair
            last[:-1] = first[1:]
            pick = first if duplicates == "first" else last
            if duplicates in ("first", "last"):
                values = values[pick]
            if timestamps is not None:
                timestamps = timestamps[pick]
            del pick, last
            keys = keys[first]
        del first
        # A merged value of 0 is no interaction, as in a sparse matrix (a rating
        # of 0, or counts summing to 0); min_rating then keeps the rated ones.
        keep = values != 0
        if min_rating is not None:
            keep &= values >= min_rating
        if not keep.all():
            keys, values = keys[keep], values[keep]
            if timestamps is not None:
                timestamps = timestamps[keep]
        del keep
        # keys are sorted: row u starts at the first key >= u * n_items.
        indptr = np.searchsorted(keys, np.arange(n_users + 1, dtype=np.int64) * n_items)
        if n_items:
            np.remainder(keys, n_items, out=keys)
        cols = keys.astype(np.int32)
        del keys
        index_dtype = np.int32 if cols.size < 2**31 else np.int64
        matrix = sp.csr_matrix((values, cols.astype(index_dtype, copy=False),
                                indptr.astype(index_dtype)), shape=(n_users, n_items))
        matrix.has_canonical_format = True
        return cls(matrix, user_map, item_map, timestamps)

    # ----------------------------------------------------------------- access
    @property
    def user_ids(self):
        """Raw user id of each row."""
        return self.user_map.ids

    @property
    def item_ids(self):
        """Raw item id of each column."""
        return self.item_map.ids

    @property
    def shape(self):
        return self.matrix.shape

    @property
    def n_users(self):
        return self.matrix.shape[0]

    @property
    def n_items(self):
        return self.matrix.shape[1]

    @property
    def nnz(self):
        return self.matrix.nnz

    def tocsr(self):
        """The interaction matrix (CSR, float32); same as ``.matrix``."""
        return self.matrix

    def __repr__(self):
        ts = ", with timestamps" if self.timestamps is not None else ""
        return (f"Interactions({self.n_users} users x {self.n_items} items, "
                f"{self.nnz} interactions{ts})")

    def with_matrix(self, matrix, timestamps=None):
        """A new ``Interactions`` on the same id maps (used by the splits)."""
        return type(self)(matrix, self.user_map, self.item_map, timestamps)


def _event_order(keys, n_keys, timestamps):
    """``(order, keys[order])`` with ``order = np.lexsort((timestamps, keys))``.

    ``keys`` (int64, each in ``0..n_keys - 1``) may be overwritten. A stable
    sort by key is an in-place sort of ``key * n + position`` when that fits
    in int64 (NumPy's SIMD sort: many times faster than a stable argsort, and
    no index buffer); the events of repeated keys are then re-sorted by
    timestamp, which keeps the same ties (by position).
    """
    n = keys.size
    if n and n_keys * n < 2**63:
        ordered = keys
        ordered *= n
        ordered += np.arange(n, dtype=np.int64)
        ordered.sort()
        order = (ordered % n).astype(np.int32 if n < 2**31 else np.int64)  # half the memory
        ordered //= n
    else:
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
    if timestamps is None or keys.size < 2:
        return order, ordered
    repeated = ordered[1:] == ordered[:-1]
    if repeated.any():
        in_group = np.zeros(keys.size, bool)
        in_group[1:] = repeated
        in_group[:-1] |= repeated
        del repeated
        rows = np.flatnonzero(in_group)
        del in_group
        events = order[rows]
        order[rows] = events[np.lexsort((timestamps[events], ordered[rows]))]
    return order, ordered


def as_matrix(X):
    """``X.matrix`` for :class:`Interactions`, ``X`` unchanged otherwise."""
    return X.matrix if isinstance(X, Interactions) else X


def as_id_array(raw, name):
    """Raw ids as a 1-D int64 or str ndarray (object arrays of str become str)."""
    array = np.asarray(raw)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one id per entry); got shape {array.shape}.")
    kind = array.dtype.kind
    if kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise ValueError(
            f"{name} holds ids above 2**63 - 1 ({array.max()}); pass them as strings."
        )
    if kind in "iub":
        return array.astype(np.int64)
    if kind == "U":
        return array
    if kind == "S":
        return array.astype(str)
    if kind == "f":
        if not np.isfinite(array).all() or not np.all(array == np.round(array)):
            raise ValueError(
                f"{name} holds non-integer numbers; ids must be ints or strings."
            )
        return array.astype(np.int64)
    if kind == "O":
        # Every element is looked at once (a pandas object column may hide a
        # None or NaN anywhere); ints and strings must not mix.
        types = {type(x) for x in array}
        ints = {t for t in types if issubclass(t, (int, np.integer)) and not issubclass(t, bool)}
        strs = {t for t in types if issubclass(t, str)}
        other = types - ints - strs
        if other:
            bad = next(x for x in array if type(x) in other)
            raise TypeError(
                f"{name} holds {type(bad).__name__} values such as {bad!r}; ids must be ints or "
                "strings (missing values are not allowed)."
            )
        if ints and strs:
            raise TypeError(
                f"{name} mixes int and str ids; convert them to one type first (e.g. all str)."
            )
        return array.astype(np.int64 if ints else str)
    raise TypeError(f"{name} must hold ints or strings; got dtype {array.dtype}.")


def _index_array(codes, n):
    return codes.astype(np.int32 if n < 2**31 else np.int64)


def _as_map(ids, n, name):
    if ids is None:
        return IdMap(np.arange(n, dtype=np.int64))
    id_map = ids if isinstance(ids, IdMap) else IdMap(ids)
    if len(id_map) != n:
        raise ValueError(f"{name} has {len(id_map)} ids but the matrix has {n} along that axis.")
    return id_map
