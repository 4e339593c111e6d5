"""Streamed, vectorised CSV/TSV reading for :meth:`Interactions.from_csv` (NumPy only).

How a file is read
------------------
* The file is opened in binary mode and read into one reusable ``uint8``
  buffer, ``chunk_rows`` lines at a time. It never sits whole in memory, and
  its lines never become Python strings.
* Within a chunk, all the work is whole-array NumPy. The positions of the
  newlines and separators come from ``np.flatnonzero``, and every field is a
  pair of (start, stop) byte offsets. Numbers are parsed one character
  position at a time: the loop runs over the width of the widest field, never
  over rows. Values that are not plain ints go through NumPy's bytes-to-float
  cast.
* Ids are decided per column. They are int64 when every value of the column,
  in every chunk, is a canonical decimal int (``-?[1-9][0-9]*`` or ``0``,
  fitting in int64). Otherwise they are strings, and the ids of earlier chunks
  that were read as ints become strings too. String ids are packed, 8 bytes
  at a time, into big-endian uint64 words. Sorting them is then integer
  sorting, and it gives the byte order, which for UTF-8 is the order of the
  decoded strings (other encodings are re-sorted once decoded).
* Each chunk keeps only its distinct ids (``np.unique``) and int32 codes into
  them, written into one array for the whole file (:class:`_Store`). At the
  end, the distinct ids of all chunks are merged with one more unique, and
  each chunk's codes are translated through the merge, in place.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import sys

import numpy as np

__all__ = ["read_events"]

_NL, _CR, _TAB, _SPACE, _QUOTE = 10, 13, 9, 32, 34
_MINUS, _PLUS, _ZERO = 45, 43, 48
_MAX_DIGITS = 19  # 2**63 - 1 has 19 digits
_INT64_MAX = np.uint64(2**63 - 1)
_SHOWN_CHARS = 200  # characters of a bad line quoted in an error message
_READ_SLACK = 1 << 16  # bytes read beyond the estimated size of a chunk
_SCAN_BLOCK = 1 << 22  # bytes compared at a time when looking for newlines or separators


# --------------------------------------------------------------------------- entry point


def read_events(path, user_col, item_col, rating_col=None, timestamp_col=None, *, sep=None,
                header=True, chunk_rows=1_000_000, encoding="utf-8"):
    """Read the event columns of a CSV/TSV file.

    Parameters are those of :meth:`bpr_numba.data.Interactions.from_csv`.

    Returns
    -------
    user_ids : ndarray of int64 or str, shape (n_users,)
        The distinct user ids, sorted (the order of ``np.unique``).
    user_codes : ndarray of int32, shape (n,)
        Index into ``user_ids`` of each event (int64 past 2**31 - 1 ids).
    item_ids, item_codes : likewise for items.
    ratings : ndarray of float32, shape (n,), or None
    timestamps : ndarray of int64 or float64, shape (n,), or None
    """
    _check_options(sep, header, chunk_rows, encoding)
    name = os.fspath(path)
    with open(name, "rb") as f:
        data_start = 3 if f.read(3) == codecs.BOM_UTF8 and _is_utf8(encoding) else 0
        f.seek(data_start)
        first_line = _first_line(f, header, name)
        names = []
        if first_line is not None:
            text = first_line.decode(encoding, errors="replace")
            if sep is None:
                sep = "\t" if "\t" in text else ","
            names = [_unquote(part.strip()) for part in text.split(sep)]
        columns = _columns(names, header, name, first_line is None, user_col=user_col,
                           item_col=item_col, rating_col=rating_col, timestamp_col=timestamp_col)
        where = _Where(name, encoding, sep)
        f.seek(data_start)
        if header:
            f.readline()
        if first_line is not None:
            _read_chunks(f, columns, sep.encode(encoding)[0], len(names), chunk_rows,
                         2 if header else 1, where)
    user_ids, user_codes = columns["user_col"].finish(where)
    item_ids, item_codes = columns["item_col"].finish(where)
    ratings = columns["rating_col"].finish() if "rating_col" in columns else None
    timestamps = columns["timestamp_col"].finish() if "timestamp_col" in columns else None
    del columns
    _release_free_heap()
    return user_ids, user_codes, item_ids, item_codes, ratings, timestamps


def _columns(names, header, name, no_data, **cols):
    """The column readers, by argument name (only for the columns asked for)."""
    columns = {}
    for arg, label in (("user_col", "user id"), ("item_col", "item id"),
                       ("rating_col", "rating"), ("timestamp_col", "timestamp")):
        col = cols[arg]
        if col is None and arg in ("user_col", "item_col"):
            raise ValueError(f"{arg} is required (a column name or position); got None.")
        if col is not None:
            index = _column_index(col, arg, names, header, name, no_data)
            kind = _IdColumn if arg in ("user_col", "item_col") else _NumberColumn
            columns[arg] = kind(label, col, index)
    return columns


def _read_chunks(f, columns, sep_byte, n_fields, chunk_rows, first_line, where):
    """Feed the file's data lines to the columns, chunk by chunk."""
    data_bytes = os.fstat(f.fileno()).st_size - f.tell()
    expected_rows = None
    for chunk in _chunks(f, chunk_rows, first_line):
        fields = _split(chunk, sep_byte, n_fields, where)
        if expected_rows is None:  # from the first chunk's bytes per line
            per_line = chunk.size / max(chunk.newlines.size, 1)
            expected_rows = int(data_bytes / per_line * 1.05) + 16
        errors = []
        for column in columns.values():
            try:
                column.add(chunk.buf, *fields[column.index], expected_rows)
            except _RowError as exc:
                errors.append(exc)
        if errors:  # report the earliest bad line of the chunk
            first_bad = min(errors, key=lambda exc: exc.row)
            raise where.error(chunk, fields.kept_line(first_bad.row), first_bad.message)


def _release_free_heap():
    """Give the heap memory freed by the chunks back to the OS (glibc only; else a no-op).

    The chunks' temporaries (a few MB each at the default ``chunk_rows``) live
    in glibc's heap. Small arrays kept between chunks (each chunk's distinct
    ids) pin it, so the freed space stays resident while the matrix is built
    from large, separately mapped arrays. ``malloc_trim(0)`` returns those free
    pages: on 10M rows that is the parsing working set, about a quarter of the
    peak.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass


# --------------------------------------------------------------------------- options


def _is_utf8(encoding):
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def _check_options(sep, header, chunk_rows, encoding):
    if not isinstance(encoding, str):
        raise TypeError(f"encoding must be a str such as 'utf-8'; got {type(encoding).__name__}.")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"encoding must name a Python codec such as 'utf-8'; got {encoding!r}.") \
            from None
    if "\n".encode(encoding) != b"\n" or ",".encode(encoding) != b",":
        raise ValueError(
            f"encoding must be ASCII-compatible (one byte per newline and separator, such as "
            f"'utf-8' or 'latin-1'); got {encoding!r}."
        )
    if sep is not None:
        if not isinstance(sep, str):
            raise TypeError(f"sep must be None (sniff) or a one-character str; got "
                            f"{type(sep).__name__}.")
        if len(sep) != 1 or sep in "\r\n\"" or len(sep.encode(encoding, "replace")) != 1:
            raise ValueError(
                f"sep must be one character that is one byte in {encoding} (not a newline or "
                f"quote), such as ',' or '\\t'; got {sep!r}."
            )
    if not isinstance(header, (bool, np.bool_)):
        raise TypeError(f"header must be True or False; got {header!r}.")
    if isinstance(chunk_rows, (bool, np.bool_)) or not isinstance(chunk_rows, (int, np.integer)):
        raise TypeError(f"chunk_rows must be an int >= 1; got {chunk_rows!r}.")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1 (lines read at a time); got {chunk_rows}.")


def _first_line(f, header, name):
    """The header line, or without a header the first non-blank line (None if there is none)."""
    for raw in iter(f.readline, b""):
        line = raw.rstrip(b"\r\n")
        if header:
            if not line.strip():
                raise ValueError(
                    f"{name}, line 1: the header line is empty; pass header=False for a file "
                    "without a header (columns are then integer positions)."
                )
            return line
        if line.strip():
            return line
    if header:
        raise ValueError(f"{name} is empty; expected a header line naming the columns.")
    return None


def _unquote(text):
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _column_index(col, arg, names, header, name, no_data):
    """Position of column ``col`` (a header name or a position)."""
    if isinstance(col, (int, np.integer)) and not isinstance(col, (bool, np.bool_)):
        if not 0 <= col < len(names) and not (no_data and col >= 0):
            raise ValueError(
                f"{arg}={col} is not a column position of {name}, which has {len(names)} "
                f"column(s) (positions 0..{len(names) - 1})."
            )
        return int(col)
    if isinstance(col, str):
        if not header:
            raise ValueError(
                f"{arg}={col!r}: with header=False columns are integer positions (0, 1, ...)."
            )
        if col not in names:
            raise ValueError(f"{arg}={col!r} is not a column of {name}; its header has columns "
                             f"{names}.")
        if names.count(col) > 1:
            raise ValueError(f"{arg}={col!r} names more than one column of {name}; its header "
                             f"has columns {names}. Pass the position instead.")
        return names.index(col)
    raise TypeError(f"{arg} must be a column name (str) or position (int); got "
                    f"{type(col).__name__}.")


# --------------------------------------------------------------------------- chunks


class _Chunk:
    """``buf[:size]`` holds whole lines; ``newlines`` are their positions of ``\\n``."""

    def __init__(self, buf, size, newlines, first_line):
        self.buf = buf
        self.size = size
        self.newlines = newlines
        self.first_line = first_line


def _positions(buf, lo, hi, byte):
    """Positions of ``byte`` in ``buf[lo:hi]``, int32 unless the buffer is 2 GiB or larger.

    Scans block by block so that the temporary masks stay small.
    """
    dtype = np.int32 if buf.size < 2**31 else np.int64
    parts = []
    for block in range(lo, hi, _SCAN_BLOCK):
        found = np.flatnonzero(buf[block:min(block + _SCAN_BLOCK, hi)] == byte).astype(dtype)
        found += block
        parts.append(found)
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _chunks(f, chunk_rows, first_line):
    """Yield :class:`_Chunk` of ``chunk_rows`` lines (fewer at the end) from one buffer.

    The buffer is reused: a chunk is only valid until the next one is requested.
    Its capacity grows to the size of one chunk (estimated from the bytes per
    line seen so far, plus 10%); what was read past the chunk's last line
    moves to the front for the next chunk.
    """
    buf = np.empty(_READ_SLACK, np.uint8)
    size = 0  # bytes of buf holding data
    found = []  # positions of the newlines in buf[:size], in pieces
    n_found = 0
    eof = False
    line_no = first_line
    while True:
        while n_found < chunk_rows and not eof:
            if size == buf.size:  # full: grow to about one chunk, but not past the file's end
                if n_found:
                    wanted = int(size / n_found * chunk_rows * 1.1) + _READ_SLACK
                else:
                    wanted = 2 * buf.size
                left = os.fstat(f.fileno()).st_size - f.tell()
                grown = np.empty(max(min(wanted, size + left + 1), buf.size + _READ_SLACK),
                                 np.uint8)
                grown[:size] = buf[:size]
                buf = grown
            got = f.readinto(memoryview(buf)[size:])
            if not got:
                eof = True
                break
            found.append(_positions(buf, size, size + got, _NL))
            n_found += found[-1].size
            size += got
        if size == 0:
            return
        newlines = found[0] if len(found) == 1 else np.concatenate(found)
        rest = newlines[chunk_rows:]
        newlines = newlines[:chunk_rows]
        # A full chunk ends after its last newline; a short one is the end of the file,
        # whose last line may lack a newline.
        end = int(newlines[-1]) + 1 if newlines.size == chunk_rows else size
        yield _Chunk(buf, end, newlines, line_no)
        line_no += newlines.size + (end > (int(newlines[-1]) + 1 if newlines.size else 0))
        buf[:size - end] = buf[end:size]
        size -= end
        found = [rest - end]
        n_found = rest.size


class _Fields:
    """Field offsets of the non-blank lines of one chunk."""

    def __init__(self, starts, stops, kept, n_rows):
        self._starts, self._stops = starts, stops
        self.kept = kept  # chunk line of each row, or None when no line was blank
        self.n_rows = n_rows

    def __getitem__(self, k):
        return self._starts[k], self._stops[k]

    def kept_line(self, row):
        return int(row if self.kept is None else self.kept[row])


def _split(chunk, sep_byte, n_fields, where):
    """Cut the lines of ``chunk`` into ``n_fields`` fields; raise on a line with another count."""
    buf, size, newlines = chunk.buf, chunk.size, chunk.newlines
    line_stops = newlines
    if not newlines.size or newlines[-1] + 1 < size:
        line_stops = np.append(newlines, size)
    line_starts = np.empty_like(line_stops)
    line_starts[:1] = 0
    line_starts[1:] = line_stops[:-1] + 1
    crlf = (line_stops > line_starts) & (buf.take(line_stops - 1, mode="clip") == _CR)
    line_stops = line_stops - crlf
    blank = line_stops == line_starts
    seps = _positions(buf, 0, size, sep_byte)
    kept = np.flatnonzero(~blank) if blank.any() else None
    if not _fields_fit(seps, line_starts, line_stops, kept, n_fields):
        n_seps = np.diff(np.searchsorted(seps, line_stops), prepend=0)
        for line in np.flatnonzero((n_seps != n_fields - 1) & ~blank):
            text = buf[line_starts[line]:line_stops[line]].tobytes()
            if not text.strip() and n_seps[line] == 0:  # spaces only: a blank line
                blank[line] = True
                continue
            raise where.error(chunk, int(line),
                              f"expected {n_fields} fields separated by {where.sep!r}, found "
                              f"{int(n_seps[line]) + 1}")
        kept = np.flatnonzero(~blank)
    if kept is not None:
        line_starts, line_stops = line_starts[kept], line_stops[kept]
    seps = seps.reshape(line_starts.size, n_fields - 1)
    starts = [line_starts] + [seps[:, k] + 1 for k in range(n_fields - 1)]
    stops = [seps[:, k] for k in range(n_fields - 1)] + [line_stops]
    return _Fields(starts, stops, kept, int(line_starts.size))


def _fields_fit(seps, line_starts, line_stops, kept, n_fields):
    """Whether each (kept) line holds exactly ``n_fields - 1`` separators.

    True when the counts add up and each line's share of the separators lies
    inside it; a cheap test, since the separators are sorted.
    """
    if kept is not None:
        line_starts, line_stops = line_starts[kept], line_stops[kept]
    if seps.size != line_starts.size * (n_fields - 1):
        return False
    if n_fields == 1 or not seps.size:
        return True
    per_line = seps.reshape(line_starts.size, n_fields - 1)
    return bool(np.all(per_line[:, 0] >= line_starts) and np.all(per_line[:, -1] < line_stops))


class _RowError(Exception):
    def __init__(self, row, message):
        super().__init__(message)
        self.row, self.message = int(row), message


class _Where:
    """The file's name, encoding and separator, for messages."""

    def __init__(self, name, encoding, sep):
        self.name, self.encoding, self.sep = name, encoding, sep

    def error(self, chunk, line, message):
        """ValueError naming the file, the 1-based line number and the line itself."""
        newlines = chunk.newlines
        start = int(newlines[line - 1]) + 1 if line > 0 else 0
        stop = int(newlines[line]) if line < newlines.size else chunk.size
        text = chunk.buf[start:stop].tobytes().rstrip(b"\r").decode(self.encoding, "replace")
        if len(text) > _SHOWN_CHARS:
            text = text[:_SHOWN_CHARS] + "..."
        return ValueError(f"{self.name}, line {chunk.first_line + line}: {message}; the line is "
                          f"{text!r}.")


# --------------------------------------------------------------------------- fields


def _trim(buf, start, stop):
    """Offsets without surrounding spaces and tabs, then without one pair of double quotes."""
    while True:  # one pass per leading or trailing pad: none in most files
        head = buf.take(start, mode="clip")
        tail = buf.take(stop - 1, mode="clip")
        nonempty = start < stop
        head_pad = nonempty & ((head == _SPACE) | (head == _TAB))
        tail_pad = nonempty & ((tail == _SPACE) | (tail == _TAB)) & ~head_pad
        if not (head_pad.any() or tail_pad.any()):
            break
        start, stop = start + head_pad, stop - tail_pad
    quoted = (stop - start >= 2) & (head == _QUOTE) & (tail == _QUOTE)
    if quoted.any():
        start, stop = start + quoted, stop - quoted
    return start, stop


def _parse_ints(buf, start, stop, canonical):
    """Decimal ints held by the fields, as int64; None when one of them is not such an int.

    ``canonical`` accepts only what ``str(int)`` writes (no ``+``, no leading
    zeros, no ``-0``), so that int ids read back as the same text.
    """
    n = start.size
    if n == 0:
        return np.zeros(0, np.int64)
    width = stop - start
    first = buf.take(start, mode="clip")
    negative = (first == _MINUS) & (width > 0)
    signed = negative if canonical else negative | ((first == _PLUS) & (width > 0))
    digits_at = start + signed
    n_digits = width - signed
    if n_digits.min() < 1 or n_digits.max() > _MAX_DIGITS:
        return None
    if canonical:
        lead = buf.take(digits_at, mode="clip")
        if np.any((lead == _ZERO) & ((n_digits > 1) | negative)):
            return None
    value = np.zeros(n, np.uint64)
    all_active = int(n_digits.min())
    for j in range(int(n_digits.max())):
        digit = buf.take(digits_at + j, mode="clip") - np.uint8(_ZERO)  # wraps below '0'
        if j < all_active:
            if np.any(digit > 9):
                return None
            value *= np.uint64(10)
            value += digit
        else:
            active = j < n_digits
            if np.any(active & (digit > 9)):
                return None
            value = np.where(active, value * np.uint64(10) + digit, value)
    if value.max() > _INT64_MAX:
        return None
    value = value.astype(np.int64)
    np.negative(value, out=value, where=negative)
    return value


def _pack_words(buf, start, stop):
    """The fields' bytes as big-endian uint64 words: a list of ``ceil(width / 8)`` arrays.

    Comparing the word lists compares the byte strings (shorter ones padded
    with zero bytes, as NumPy's ``S`` dtype does).
    """
    width = stop - start
    max_width = int(width.max()) if width.size else 0
    words = [np.zeros(start.size, np.uint64) for _ in range(max(1, -(-max_width // 8)))]
    min_width = int(width.min()) if width.size else 0
    for j in range(max_width):
        char = buf.take(start + j, mode="clip").astype(np.uint64)
        if j >= min_width:
            char[j >= width] = 0
        char <<= np.uint64(8 * (7 - j % 8))
        words[j // 8] |= char
    return words


def _unique_words(words):
    """``np.unique(..., return_inverse=True)`` of rows of words: (unique word list, inverse)."""
    if len(words) == 1:
        unique, inverse = np.unique(words[0], return_inverse=True)
        return [unique], inverse.reshape(-1)
    n = words[0].size
    order = np.lexsort(words[::-1])  # the first word is the primary key
    changed = np.zeros(n, bool)
    changed[:1] = True
    for word in words:
        ordered = word[order]
        changed[1:] |= ordered[1:] != ordered[:-1]
    inverse = np.empty(n, np.intp)
    inverse[order] = np.cumsum(changed) - 1
    firsts = order[changed]
    return [word[firsts] for word in words], inverse


def _words_to_bytes(words):
    """Rows of words back to an ``S`` array (trailing zero bytes dropped, as ``S`` does)."""
    stacked = np.stack(words, axis=1).astype(">u8")
    return stacked.view(f"S{8 * len(words)}").reshape(-1)


def _bytes_to_words(array):
    """An ``S`` array as rows of big-endian uint64 words (see :func:`_pack_words`)."""
    n, width = array.size, array.dtype.itemsize
    k = max(1, -(-width // 8))
    padded = np.zeros((n, 8 * k), np.uint8)
    if width:
        padded[:, :width] = array.view(np.uint8).reshape(n, width)
    as_words = padded.view(">u8")
    return [as_words[:, i].astype(np.uint64) for i in range(k)]


def _field_bytes(buf, start, stop):
    """The fields as an ``S`` array (for float parsing and messages)."""
    return _words_to_bytes(_pack_words(buf, start, stop))


def _show(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- columns


class _Store:
    """A 1-D array filled chunk by chunk: one allocation, sized from an estimate of the rows.

    Keeping what the chunks keep in one large array, rather than in one small
    array per chunk, keeps it out of the heap where each chunk's temporaries
    come and go. Otherwise glibc's heap ends up fragmented, and the resident
    memory stays well above what is in use. It also saves a final
    concatenation. An estimate that is too large costs address space only:
    pages past the last row are never touched.
    """

    def __init__(self, dtype):
        self.array = np.empty(0, dtype)
        self.size = 0

    def append(self, values, expected_rows):
        end = self.size + values.size
        if end > self.array.size:
            grown = np.empty(max(end, expected_rows, int(1.5 * self.array.size)),
                             self.array.dtype)
            grown[:self.size] = self.array[:self.size]
            self.array = grown
        self.array[self.size:end] = values
        self.size = end

    def astype(self, dtype):
        converted = np.empty(self.array.size, dtype)
        converted[:self.size] = self.array[:self.size]
        self.array = converted

    def values(self):
        return self.array[:self.size]


class _IdColumn:
    """Distinct ids and int32 codes of one id column, chunk by chunk."""

    def __init__(self, label, col, index):
        self.label, self.col, self.index = label, col, index
        self.is_str = False
        self.uniques = []  # per chunk: int64 ids, or S ids once the column holds strings
        self.codes = _Store(np.int32)  # each chunk's codes into its own uniques
        self.chunk_sizes = []

    def add(self, buf, start, stop, expected_rows):
        start, stop = _trim(buf, start, stop)
        empty = np.flatnonzero(start == stop)
        if empty.size:
            raise _RowError(empty[0], f"empty {self.label} in column {self.col!r}")
        self.chunk_sizes.append(start.size)
        if not self.is_str:
            values = _parse_ints(buf, start, stop, canonical=True)
            if values is not None:
                unique, inverse = np.unique(values, return_inverse=True)
                self.uniques.append(unique)
                self.codes.append(inverse.reshape(-1), expected_rows)
                return
            self.is_str = True
            self.uniques = [unique.astype("S") for unique in self.uniques]
        unique, inverse = _unique_words(_pack_words(buf, start, stop))
        self.uniques.append(_words_to_bytes(unique))
        self.codes.append(inverse, expected_rows)

    def finish(self, where):
        """Merge the chunks: ``(ids, codes)`` with ids sorted as ``np.unique`` sorts them."""
        if not self.uniques:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        merged = np.concatenate(self.uniques)
        if self.is_str:
            unique, inverse = _unique_words(_bytes_to_words(merged))
            ids = _decode(_words_to_bytes(unique), where, self.label)
        else:
            ids, inverse = np.unique(merged, return_inverse=True)
            inverse = inverse.reshape(-1)
        del merged
        if ids.dtype.kind == "U" and ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
            # Byte order differs from str order in some non-UTF-8 encodings.
            order = np.argsort(ids)
            rank = np.empty(ids.size, np.intp)
            rank[order] = np.arange(ids.size)
            ids = ids[order]
            inverse = rank[inverse]
        if ids.size >= 2**31:
            self.codes.astype(np.int64)
        codes = self.codes.values()
        offset = position = 0
        for unique, size in zip(self.uniques, self.chunk_sizes):
            local = codes[position:position + size]  # translated in place
            local[...] = inverse[local.astype(np.intp) + offset]
            offset += unique.size
            position += size
        self.uniques, self.codes = [], None
        return ids, codes


def _decode(array, where, label):
    """``S`` ids to ``str`` with the file's encoding (a fast cast when they are ASCII)."""
    if not array.size or array.view(np.uint8).max() < 128:
        return array.astype("U")
    try:
        return np.char.decode(array, where.encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where.name}: a {label} is not valid {where.encoding} text ({exc}); "
                         "pass the file's encoding=.") from None


class _NumberColumn:
    """Ratings (float32) or timestamps (int64, or float64 once one is not an int)."""

    def __init__(self, label, col, index):
        self.label, self.col, self.index = label, col, index
        self.store = _Store(np.float32 if label == "rating" else np.int64)
        self.ints_failed = False  # a chunk held a non-int: skip the int parser from now on

    def add(self, buf, start, stop, expected_rows):
        start, stop = _trim(buf, start, stop)
        empty = np.flatnonzero(start == stop)
        if empty.size:
            raise _RowError(empty[0], f"empty {self.label} in column {self.col!r}")
        values = None if self.ints_failed else _parse_ints(buf, start, stop, canonical=False)
        if values is None:
            self.ints_failed = True
            values = self._parse_floats(_field_bytes(buf, start, stop))
        if self.label == "rating":
            with np.errstate(over="ignore"):  # too large for float32: reported just below
                values = values.astype(np.float32)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                text = _show(_field_bytes(buf, start[bad[:1]], stop[bad[:1]])[0])
                raise _RowError(bad[0], f"rating {text!r} in column {self.col!r} is not a "
                                        "finite float32 number")
        elif values.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                text = _show(_field_bytes(buf, start[bad[:1]], stop[bad[:1]])[0])
                raise _RowError(bad[0], f"timestamp {text!r} in column {self.col!r} is not a "
                                        "finite number")
            if self.store.array.dtype.kind != "f":  # the whole column becomes float64
                self.store.astype(np.float64)
        self.store.append(values, expected_rows)

    def _parse_floats(self, texts):
        try:
            return texts.astype(np.float64)
        except ValueError:
            pass
        for row, text in enumerate(texts):  # only on error: find the first bad value
            try:
                texts[row:row + 1].astype(np.float64)
            except ValueError:
                raise _RowError(row, f"{self.label} {_show(text)!r} in column {self.col!r} is "
                                     "not a number") from None
        raise AssertionError("unreachable: the cast failed but every value parses")

    def finish(self):
        return self.store.values()
