"""String functions (DuckDB semantics where they differ from plain Arrow)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import PlanError
from engine.functions.registry import Value, register
from engine.types import is_string, type_name


def _strings(*positions: int, result: pa.DataType = pa.string(), extra: pa.DataType = pa.int64()):
    """Signature: the given argument positions are text, the others ``extra`` (int by default)."""
    def signature(types: Sequence[pa.DataType], name: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
        targets: list[pa.DataType | None] = []
        for i, t in enumerate(types):
            want = pa.string() if i in positions else extra
            if want == pa.string() and not (is_string(t) or pa.types.is_null(t)):
                raise PlanError(f"{name}() needs text for argument {i + 1}, got {type_name(t)}")
            targets.append(want)
        return targets, result
    return signature


def _scalar_int(value: Value) -> int | None:
    return value.as_py() if isinstance(value, pa.Scalar) else None


@register("upper", _strings(0), min_args=1, max_args=1, aliases=("ucase",))
def upper(text: Value, *, result: pa.DataType) -> Value:
    return pc.utf8_upper(text)


@register("lower", _strings(0), min_args=1, max_args=1, aliases=("lcase",))
def lower(text: Value, *, result: pa.DataType) -> Value:
    return pc.utf8_lower(text)


@register("length", _strings(0, result=pa.int64()), min_args=1, max_args=1,
          aliases=("char_length", "character_length", "len", "strlen"))
def length(text: Value, *, result: pa.DataType) -> Value:
    return pc.utf8_length(text).cast(pa.int64())


@register("trim", _strings(0, 1), min_args=1, max_args=2, aliases=("btrim",))
def trim(text: Value, chars: Value | None = None, *, result: pa.DataType) -> Value:
    return pc.utf8_trim(text, " " if chars is None else chars.as_py())


@register("ltrim", _strings(0, 1), min_args=1, max_args=2)
def ltrim(text: Value, chars: Value | None = None, *, result: pa.DataType) -> Value:
    return pc.utf8_ltrim(text, " " if chars is None else chars.as_py())


@register("rtrim", _strings(0, 1), min_args=1, max_args=2)
def rtrim(text: Value, chars: Value | None = None, *, result: pa.DataType) -> Value:
    return pc.utf8_rtrim(text, " " if chars is None else chars.as_py())


@register("replace", _strings(0, 1, 2), min_args=3, max_args=3)
def replace(text: Value, old: Value, new: Value, *, result: pa.DataType) -> Value:
    if old.as_py() == "":
        return text  # DuckDB: nothing to replace (and Arrow's kernel never returns on an empty pattern)
    return pc.replace_substring(text, old.as_py(), new.as_py())


@register("reverse", _strings(0), min_args=1, max_args=1)
def reverse(text: Value, *, result: pa.DataType) -> Value:
    return pc.utf8_reverse(text)


@register("starts_with", _strings(0, 1, result=pa.bool_()), min_args=2, max_args=2, aliases=("prefix",))
def starts_with(text: Value, prefix: Value, *, result: pa.DataType) -> Value:
    return pc.starts_with(text, prefix.as_py())


@register("ends_with", _strings(0, 1, result=pa.bool_()), min_args=2, max_args=2, aliases=("suffix",))
def ends_with(text: Value, suffix: Value, *, result: pa.DataType) -> Value:
    return pc.ends_with(text, suffix.as_py())


@register("contains", _strings(0, 1, result=pa.bool_()), min_args=2, max_args=2)
def contains(text: Value, needle: Value, *, result: pa.DataType) -> Value:
    return pc.match_substring(text, needle.as_py())


@register("strpos", _strings(0, 1, result=pa.int64()), min_args=2, max_args=2, aliases=("instr", "position"))
def strpos(text: Value, needle: Value, *, result: pa.DataType) -> Value:
    """1-based position in characters, 0 when absent (Arrow's find_substring counts bytes)."""
    pattern = needle.as_py()
    found = pc.find_substring(text, pattern)
    if pattern == "":
        return pc.add(found, 1).cast(pa.int64())
    before = pc.list_element(pc.split_pattern(text, pattern, max_splits=1), 0)
    return pc.if_else(pc.less(found, 0), 0, pc.add(pc.utf8_length(before), 1)).cast(pa.int64())


@register("substring", _strings(0), min_args=2, max_args=3, aliases=("substr",))
def substring(text: Value, start: Value, count: Value | None = None, *, result: pa.DataType) -> Value:
    """SQL SUBSTRING: 1-based; a start before 1 eats into the count (DuckDB)."""
    first, n = _scalar_int(start), _scalar_int(count) if count is not None else None
    if first is None or (count is not None and n is None):
        return _substring_rows(text, start, count)
    if n is not None and n < 0:  # rare: the row-wise path implements DuckDB's negative counts
        if isinstance(text, pa.Scalar):
            return _substring_rows(pa.array([text.as_py()], pa.string()), start, count)[0]
        return _substring_rows(text, start, count)
    if first > 0:
        begin = first - 1
    elif first == 0:
        begin = 0
        n = None if n is None else max(0, n - 1)
    else:
        begin = first  # negative: from the end
    stop = None if n is None else (begin + n if begin >= 0 or begin + n < 0 else None)
    if n is not None and begin < 0 and begin + n >= 0:
        stop = None
    return pc.utf8_slice_codeunits(text, begin, stop) if stop is not None else pc.utf8_slice_codeunits(text, begin)


def _substring_rows(text: Value, start: Value, count: Value | None) -> Value:
    texts = text.to_pylist() if not isinstance(text, pa.Scalar) else None
    n = len(texts) if texts is not None else len(start)
    texts = texts or [text.as_py()] * n
    starts = start.to_pylist() if not isinstance(start, pa.Scalar) else [start.as_py()] * n
    counts = ([None] * n if count is None else
              count.to_pylist() if not isinstance(count, pa.Scalar) else [count.as_py()] * n)
    out = []
    for t, s, c in zip(texts, starts, counts):
        if t is None or s is None or (count is not None and c is None):
            out.append(None)
            continue
        if c is not None and c < 0:
            # DuckDB: a negative count takes the -c characters before the start position.
            at = s if s > 0 else (len(t) + s + 1 if s < 0 else 0)
            out.append(t[max(0, at + c - 1):max(0, at - 1)])
            continue
        begin = s - 1 if s > 0 else (0 if s == 0 else len(t) + s)
        stop = len(t) if c is None else (s - 1 + c if s > 0 else (c - 1 if s == 0 else begin + c))
        out.append(t[max(0, begin):max(0, stop)])
    return pa.array(out, pa.string())


@register("left", _strings(0), min_args=2, max_args=2)
def left(text: Value, count: Value, *, result: pa.DataType) -> Value:
    # A negative count keeps all but the last -count characters (DuckDB), which is a negative stop.
    return pc.utf8_slice_codeunits(text, 0, count.as_py())


@register("right", _strings(0), min_args=2, max_args=2)
def right(text: Value, count: Value, *, result: pa.DataType) -> Value:
    n = count.as_py()
    if n == 0:
        return pc.utf8_slice_codeunits(text, 0, 0)
    # n > 0: the last n characters; n < 0: all but the first -n (DuckDB). Both start at -n.
    return pc.utf8_slice_codeunits(text, -n)


def _concat_signature(types: Sequence[pa.DataType], name: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    return [pa.string()] * len(types), pa.string()


@register("concat_op", _concat_signature, min_args=2, max_args=2)
def concat_op(left_text: Value, right_text: Value, *, result: pa.DataType) -> Value:
    """``a || b``: NULL if either side is NULL."""
    return pc.binary_join_element_wise(left_text, right_text, "")


@register("concat", _concat_signature, min_args=1, null_propagating=False)
def concat(*texts: Value, result: pa.DataType) -> Value:
    """``concat(a, b, ...)``: NULL arguments are skipped."""
    return pc.binary_join_element_wise(*texts, "", null_handling="replace", null_replacement="")


@register("split_part", _strings(0, 1), min_args=3, max_args=3)
def split_part(text: Value, delimiter: Value, index: Value, *, result: pa.DataType) -> Value:
    i = index.as_py()
    if delimiter.as_py() == "":
        # DuckDB splits into characters; Arrow's split rejects an empty separator.
        if i == 0:
            return pc.utf8_slice_codeunits(text, 0, 0)
        return pc.utf8_slice_codeunits(text, i - 1, i) if i > 0 else (
            pc.utf8_slice_codeunits(text, i, i + 1) if i < -1 else pc.utf8_slice_codeunits(text, -1))
    parts = pc.split_pattern(text, delimiter.as_py())
    lengths = pc.list_value_length(parts)
    pos = (i - 1) if i > 0 else None
    if pos is None:
        pos_array = pc.add(lengths, i)
    else:
        pos_array = pc.if_else(pc.greater(lengths, pos), pos, -1) if not isinstance(lengths, pa.Scalar) else None
    if isinstance(parts, pa.Scalar):
        items = parts.as_py()
        if items is None:
            return pa.scalar(None, pa.string())
        k = i - 1 if i > 0 else len(items) + i
        return pa.scalar(items[k] if 0 <= k < len(items) else "", pa.string())
    valid = pc.and_(pc.greater_equal(pos_array, 0), pc.less(pos_array, lengths))
    flat = pc.list_flatten(parts)
    offsets = parts.offsets if isinstance(parts, pa.ListArray) else pa.concat_arrays(
        [c.offsets for c in parts.chunks])
    starts = pa.array(offsets.to_numpy()[:-1])
    index_array = pc.add(starts, pc.fill_null(pc.if_else(valid, pos_array, 0), 0))
    picked = pc.take(flat, pc.if_else(valid, index_array, pa.scalar(None, pa.int64())))
    return pc.if_else(pc.is_null(text), pa.scalar(None, pa.string()), pc.fill_null(picked, ""))


def _like_signature(types: Sequence[pa.DataType], name: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    return _strings(0, 1, result=pa.bool_())(types, name)


def _like_fast(text: Value, pattern: str) -> Value | None:
    """LIKE without a regex for the common shapes (Arrow runs LIKE as an anchored regex).

    ``abc`` -> equality, ``abc%`` -> starts_with, ``%abc`` -> ends_with, ``%abc%`` ->
    substring; other ``%``-only patterns first keep the rows holding their longest literal
    part (a memchr-fast search), then run the full match on those rows only.
    """
    if "_" in pattern or "\\" in pattern:
        return None
    parts = pattern.split("%")
    literals = [p for p in parts if p]
    if len(parts) == 1:
        return pc.equal(text, pattern)
    if len(parts) == 2 and parts[1] == "" and parts[0]:
        return pc.starts_with(text, parts[0])
    if len(parts) == 2 and parts[0] == "" and parts[1]:
        return pc.ends_with(text, parts[1])
    if len(parts) == 3 and parts[0] == "" and parts[2] == "" and parts[1]:
        return pc.match_substring(text, parts[1])
    if not literals or isinstance(text, pa.Scalar):
        return None
    array = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    candidates = pc.match_substring(array, max(literals, key=len))
    rows = pc.indices_nonzero(pc.fill_null(candidates, False))
    full = pc.match_like(array.take(rows), pattern)
    # Rows without the literal cannot match (False); NULL text stays NULL.
    out = np.zeros(len(array), dtype=bool)
    out[rows.to_numpy()] = np.asarray(full.to_numpy(zero_copy_only=False), dtype=bool)
    return pc.if_else(pc.is_null(array), pa.scalar(None, pa.bool_()), pa.array(out))


@register("like", _like_signature, min_args=2, max_args=2)
def like(text: Value, pattern: Value, *, result: pa.DataType) -> Value:
    fast = _like_fast(text, pattern.as_py())
    return fast if fast is not None else pc.match_like(text, pattern.as_py())


@register("ilike", _like_signature, min_args=2, max_args=2)
def ilike(text: Value, pattern: Value, *, result: pa.DataType) -> Value:
    return pc.match_like(text, pattern.as_py(), ignore_case=True)


@register("regexp_matches", _like_signature, min_args=2, max_args=2)
def regexp_matches(text: Value, pattern: Value, *, result: pa.DataType) -> Value:
    return pc.match_substring_regex(text, pattern.as_py())


@register("lpad", _strings(0, 2), min_args=3, max_args=3)
def lpad(text: Value, width: Value, fill: Value, *, result: pa.DataType) -> Value:
    n = max(width.as_py(), 0)  # DuckDB: a width of 0 or less gives ''
    return pc.utf8_slice_codeunits(pc.utf8_lpad(text, n, fill.as_py()), 0, n)


@register("rpad", _strings(0, 2), min_args=3, max_args=3)
def rpad(text: Value, width: Value, fill: Value, *, result: pa.DataType) -> Value:
    n = max(width.as_py(), 0)  # DuckDB: a width of 0 or less gives ''
    return pc.utf8_slice_codeunits(pc.utf8_rpad(text, n, fill.as_py()), 0, n)


@register("repeat", _strings(0), min_args=2, max_args=2)
def repeat(text: Value, count: Value, *, result: pa.DataType) -> Value:
    # DuckDB: a negative count repeats zero times (Arrow's kernel rejects it).
    return pc.binary_repeat(text, pc.max_element_wise(count, 0))
