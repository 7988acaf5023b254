"""Model-based test: random append / overwrite / delete histories against an in-memory model.

Every operation also records the rows the model expects at the new version; at the end every
version is read back through time travel and compared (order-insensitive) with the model.
Delete predicates are generated together with a Python evaluation in SQL three-valued logic:
a row is deleted only when the predicate is TRUE, so NULL (unknown) keeps the row.
"""

from __future__ import annotations

import operator
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lakehouse

SCHEMA = pa.schema([("id", pa.int64()), ("p", pa.string()), ("x", pa.float64()), ("s", pa.string())])
COLUMNS = SCHEMA.names

P_VALUES = [None, "a", "b", "c", "x y", "é"]
X_VALUES = [None, -1.5, 0.0, 2.0, 2.5, 3.25, 10.0]
S_VALUES = [None, "", "a", "ab", "abc", "b", "it's", "é", "z" * 40, "z" * 39 + "y"]
ID_RANGE = (-3, 25)

Truth = Any  # True, False or None (unknown)


# --- SQL three-valued logic in Python -------------------------------------------------


def and3(a: Truth, b: Truth) -> Truth:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def or3(a: Truth, b: Truth) -> Truth:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def not3(a: Truth) -> Truth:
    return None if a is None else not a


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<>": operator.ne,
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_FLIP = {"=": "=", "!=": "!=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def sql_literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def like_regex(pattern: str) -> re.Pattern[str]:
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True)
class Pred:
    """A filter as SQL text and as a Python function row -> True/False/None."""

    sql: str
    eval: Callable[[dict[str, Any]], Truth]

    def __repr__(self) -> str:  # hypothesis prints this in failing examples
        return f"Pred({self.sql!r})"


def _pool(column: str) -> list[Any]:
    if column == "id":
        return list(range(ID_RANGE[0] - 1, ID_RANGE[1] + 2))
    return [v for v in {"p": P_VALUES, "x": X_VALUES, "s": S_VALUES}[column] if v is not None]


@st.composite
def comparisons(draw: st.DrawFn) -> Pred:
    column = draw(st.sampled_from(COLUMNS))
    op = draw(st.sampled_from(list(_OPS)))
    value = draw(st.sampled_from(_pool(column)))
    compare = _OPS[op]
    if draw(st.booleans()):
        sql = f"{column} {op} {sql_literal(value)}"
    else:  # literal on the left: "5 < id" means id > 5
        sql = f"{sql_literal(value)} {_FLIP[op]} {column}"
    return Pred(sql, lambda row: None if row[column] is None else compare(row[column], value))


@st.composite
def in_lists(draw: st.DrawFn) -> Pred:
    column = draw(st.sampled_from(COLUMNS))
    values = draw(st.lists(st.sampled_from(_pool(column)), min_size=1, max_size=3))
    with_null = draw(st.booleans()) and draw(st.booleans())
    negated = draw(st.booleans())
    items = [sql_literal(v) for v in values] + (["NULL"] if with_null else [])

    def member(row: dict[str, Any]) -> Truth:
        if row[column] is None:
            return None
        if row[column] in values:
            return True
        return None if with_null else False

    if negated:
        return Pred(f"{column} NOT IN ({', '.join(items)})", lambda row: not3(member(row)))
    return Pred(f"{column} IN ({', '.join(items)})", member)


@st.composite
def null_checks(draw: st.DrawFn) -> Pred:
    column = draw(st.sampled_from(COLUMNS))
    if draw(st.booleans()):
        return Pred(f"{column} IS NULL", lambda row: row[column] is None)
    return Pred(f"{column} IS NOT NULL", lambda row: row[column] is not None)


@st.composite
def betweens(draw: st.DrawFn) -> Pred:
    column = draw(st.sampled_from(["id", "x", "s"]))
    low, high = draw(st.lists(st.sampled_from(_pool(column)), min_size=2, max_size=2))
    negated = draw(st.booleans())

    def inside(row: dict[str, Any]) -> Truth:
        v = row[column]
        return None if v is None else low <= v <= high

    keyword = "NOT BETWEEN" if negated else "BETWEEN"
    return Pred(f"{column} {keyword} {sql_literal(low)} AND {sql_literal(high)}",
                (lambda row: not3(inside(row))) if negated else inside)


@st.composite
def likes(draw: st.DrawFn) -> Pred:
    column = draw(st.sampled_from(["p", "s"]))
    base = draw(st.sampled_from(_pool(column)))
    shape = draw(st.sampled_from(["prefix", "suffix", "exact", "one"]))
    pattern = {"prefix": base[:2] + "%", "suffix": "%" + base[-1:], "exact": base,
               "one": base[:1] + "_" + "%"}[shape]
    regex = like_regex(pattern)
    return Pred(f"{column} LIKE {sql_literal(pattern)}",
                lambda row: None if row[column] is None else regex.fullmatch(row[column]) is not None)


leaves = st.one_of(comparisons(), in_lists(), null_checks(), betweens(), likes())


def _combine(children: st.SearchStrategy[Pred]) -> st.SearchStrategy[Pred]:
    def both(kind: str) -> st.SearchStrategy[Pred]:
        def build(pair: tuple[Pred, Pred]) -> Pred:
            a, b = pair
            fn = and3 if kind == "AND" else or3
            return Pred(f"({a.sql}) {kind} ({b.sql})", lambda row: fn(a.eval(row), b.eval(row)))
        return st.tuples(children, children).map(build)

    negated = children.map(lambda a: Pred(f"NOT ({a.sql})", lambda row: not3(a.eval(row))))
    return st.one_of(both("AND"), both("OR"), negated)


predicates = st.recursive(leaves, _combine, max_leaves=5)

rows = st.lists(
    st.fixed_dictionaries({
        "id": st.integers(*ID_RANGE),
        "p": st.sampled_from(P_VALUES),
        "x": st.sampled_from(X_VALUES),
        "s": st.sampled_from(S_VALUES),
    }),
    max_size=10,
)


@st.composite
def operations(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(["append", "append", "overwrite", "delete", "delete"]))
    if kind == "delete":
        return ("delete", draw(st.one_of(predicates, predicates, st.none())))
    data = draw(rows)
    # Split the data into several record batches; with a tiny target size each batch (or
    # each row) becomes its own file.
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
    target = draw(st.sampled_from([None, 1, 300]))
    return (kind, data, cuts, target)


def _arrow(data: list[dict[str, Any]], cuts: list[int]) -> pa.Table:
    table = pa.Table.from_pylist(data, schema=SCHEMA)
    bounds = [0, *cuts, len(data)]
    pieces = [table.slice(a, b - a) for a, b in zip(bounds, bounds[1:]) if b > a]
    return pa.concat_tables(pieces) if pieces else table


def _bag(records: list[dict[str, Any]]) -> Counter:
    return Counter(tuple(r[c] for c in COLUMNS) for r in records)


def run_history(ops: list[tuple[Any, ...]], probe: Pred, *, partitioned: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        table = lakehouse.create_table(
            f"{folder}/t", SCHEMA, partition_by=["p"] if partitioned else [],
            properties={"delta.checkpointInterval": "3"})
        model: list[dict[str, Any]] = []
        expected = [list(model)]
        for op in ops:
            if op[0] == "delete":
                pred = op[1]
                result = table.delete(pred.sql if pred is not None else None)
                kept = [r for r in model if pred is not None and pred.eval(r) is not True]
                assert result["num_deleted_rows"] == len(model) - len(kept), pred
                model = kept
            else:
                kind, data, cuts, target = op
                arrow = _arrow(data, cuts)
                if kind == "append":
                    table.append(arrow, target_file_size=target)
                    model = model + data
                else:
                    table.overwrite(arrow, target_file_size=target)
                    model = list(data)
            expected.append(list(model))

        assert table.version() == len(ops)
        for version, want in enumerate(expected):
            snapshot = table.snapshot(version=version)
            assert snapshot.version == version
            got = snapshot.to_arrow().select(COLUMNS).to_pylist()
            assert _bag(got) == _bag(want), f"version {version}"
            # The stats in the log count exactly the live rows.
            assert snapshot.num_records == len(want)

        # A filtered scan of the newest version keeps exactly the rows the predicate makes TRUE.
        latest = table.snapshot()
        got = latest.scan(filter=probe.sql).to_arrow().select(COLUMNS).to_pylist()
        assert _bag(got) == _bag([r for r in model if probe.eval(r) is True]), probe


HISTORY = st.lists(operations(), min_size=1, max_size=12)
MODEL_SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@MODEL_SETTINGS
@given(ops=HISTORY, probe=predicates)
def test_unpartitioned_history_matches_model(ops: list[tuple[Any, ...]], probe: Pred) -> None:
    run_history(ops, probe, partitioned=False)


@MODEL_SETTINGS
@given(ops=HISTORY, probe=predicates)
def test_partitioned_history_matches_model(ops: list[tuple[Any, ...]], probe: Pred) -> None:
    run_history(ops, probe, partitioned=True)


def test_delete_keeps_rows_where_predicate_is_unknown(tmp_path) -> None:
    """Fixed example of the three-valued rule: NULL x is neither < 1 nor >= 1."""
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA)
    table.append(pa.Table.from_pylist([
        {"id": 1, "p": "a", "x": None, "s": "n"},
        {"id": 2, "p": "a", "x": 0.0, "s": "lo"},
        {"id": 3, "p": "a", "x": 5.0, "s": "hi"},
    ], schema=SCHEMA))
    assert table.delete("NOT (x >= 1)")["num_deleted_rows"] == 1
    assert sorted(table.to_arrow().column("id").to_pylist()) == [1, 3]
    assert table.delete("x NOT IN (5.0)")["num_deleted_rows"] == 0
    assert sorted(table.to_arrow().column("id").to_pylist()) == [1, 3]


@pytest.mark.parametrize("partitioned", [False, True])
def test_replayed_regression_history(partitioned: bool) -> None:
    """A fixed long history crossing several checkpoints (interval 3), for quick diagnosis."""
    data = [{"id": i, "p": P_VALUES[i % len(P_VALUES)], "x": X_VALUES[i % len(X_VALUES)],
             "s": S_VALUES[i % len(S_VALUES)]} for i in range(20)]
    pred = Pred("x > 2.0 OR p IS NULL", lambda r: or3(None if r["x"] is None else r["x"] > 2.0, r["p"] is None))
    probe = Pred("s LIKE 'z%'", lambda r: None if r["s"] is None else r["s"].startswith("z"))
    ops = [("append", data[:7], [3], 1), ("append", data[7:], [], None), ("delete", pred),
           ("overwrite", data[5:15], [2, 4], 300), ("append", data[:3], [], None),
           ("delete", Pred("id IN (5, 6, 7)", lambda r: r["id"] in (5, 6, 7))),
           ("delete", None), ("append", data, [10], 1)]
    run_history(ops, probe, partitioned=partitioned)
