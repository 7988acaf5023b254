"""The predicate IR: parsing filter text, binding to a schema, and row semantics.

Row semantics are checked against DuckDB on the same Arrow data, so three-valued logic
(NULL), NaN ordering, signed zeros and out-of-range literals behave as in SQL.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

import lakehouse
from lakehouse import ColumnNotFoundError, InvalidFilterError
from lakehouse.expressions import (
    Always, And, Comparison, In, IsNull, Like, Not, Or, bind, columns_of, negation_normal_form, parse_filter,
    to_arrow_expression, to_predicate, to_sql,
)

UTC = dt.timezone.utc


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("id = 5", Comparison("id", "=", 5)),
    ("id == 5", Comparison("id", "=", 5)),
    ("id != 5", Comparison("id", "!=", 5)),
    ("id <> 5", Comparison("id", "!=", 5)),
    ("id < 5", Comparison("id", "<", 5)),
    ("id <= 5", Comparison("id", "<=", 5)),
    ("id > 5", Comparison("id", ">", 5)),
    ("id >= 5", Comparison("id", ">=", 5)),
    # literal on the left: the operator is mirrored
    ("5 < id", Comparison("id", ">", 5)),
    ("5 <= id", Comparison("id", ">=", 5)),
    ("5 > id", Comparison("id", "<", 5)),
    ("5 >= id", Comparison("id", "<=", 5)),
    ("5 = id", Comparison("id", "=", 5)),
    ("'x' != s", Comparison("s", "!=", "x")),
    # numbers
    ("id = -5", Comparison("id", "=", -5)),
    ("x > -2.5", Comparison("x", ">", decimal.Decimal("-2.5"))),
    ("x < 1e3", Comparison("x", "<", 1000.0)),
    ("x != +3", Comparison("x", "!=", 3)),
    ("id = (7)", Comparison("id", "=", 7)),
    # strings, booleans, typed literals
    ("s = 'it''s'", Comparison("s", "=", "it's")),
    ("s = 'é中'", Comparison("s", "=", "é中")),
    ("b = true", Comparison("b", "=", True)),
    ("d = DATE '2026-01-31'", Comparison("d", "=", dt.date(2026, 1, 31))),
    ("ts > TIMESTAMP '2026-01-01 10:00:00.123456'",
     Comparison("ts", ">", dt.datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC))),
    ("ts > TIMESTAMP '2026-01-01T10:00:00+02:00'",
     Comparison("ts", ">", dt.datetime(2026, 1, 1, 8, 0, tzinfo=UTC))),
    # IN, BETWEEN, LIKE, IS NULL
    ("id in (1, 2, 3)", In("id", (1, 2, 3))),
    ("s in ('a', 'b')", In("s", ("a", "b"))),
    ("id in (1, null)", In("id", (1, None))),
    ("id not in (1, 2)", Not(In("id", (1, 2)))),
    ("id between 1 and 10", And((Comparison("id", ">=", 1), Comparison("id", "<=", 10)))),
    ("id not between -1 and 1", Not(And((Comparison("id", ">=", -1), Comparison("id", "<=", 1))))),
    ("s like 'ab%'", Like("s", "ab%")),
    ("s ilike 'AB%'", Like("s", "AB%", case_insensitive=True)),
    ("s not like '_b'", Not(Like("s", "_b"))),
    ("x is null", IsNull("x")),
    ("x is not null", Not(IsNull("x"))),
    # boolean structure and parentheses
    ("not id = 1", Not(Comparison("id", "=", 1))),
    ("not (id = 1 or id = 2)", Not(Or((Comparison("id", "=", 1), Comparison("id", "=", 2))))),
    ("id = 1 and (id = 2 or id = 3)",
     And((Comparison("id", "=", 1), Or((Comparison("id", "=", 2), Comparison("id", "=", 3)))))),
    ("(id = 1 and id = 2) or id = 3",
     Or((And((Comparison("id", "=", 1), Comparison("id", "=", 2))), Comparison("id", "=", 3)))),
    ("true", Always(True)),
    ("false", Always(False)),
    # column names
    ("ID = 1", Comparison("ID", "=", 1)),
    ('"my col" = 1', Comparison("my col", "=", 1)),
    ("a.b = 1", Comparison("a.b", "=", 1)),
])
def test_parse_filter(text: str, expected: object) -> None:
    parsed = parse_filter(text)
    assert parsed == expected
    if isinstance(expected, Comparison) and isinstance(expected.value, dt.datetime):
        assert parsed.value.utcoffset() is not None  # typed timestamp literals carry a zone


@pytest.mark.parametrize(("text", "fragment"), [
    ("id = ", "line 1, column"),
    ("id = = 3", "line 1, column 6"),
    ("((id = 1)", "line 1, column"),
    ("a = b", "one column with a literal"),
    ("id + 1 = 2", "one column with a literal"),
    ("lower(s) = 'a'", "one column with a literal"),
    ("id = null", "is null"),
    ("null <> id", "is null"),
    ("id in (select 1)", "list of literals"),
    ("s like other", "literal"),
    ("id between a and 3", "literal"),
    ("d = DATE '2026-13-45'", "not a valid date"),
    ("", "empty"),
    ("   ", "empty"),
    ("id = 1 garbage", "not supported"),
    ("exists (select 1)", "not supported"),
])
def test_parse_errors_are_clear(text: str, fragment: str) -> None:
    with pytest.raises(InvalidFilterError) as info:
        parse_filter(text)
    assert fragment.lower() in str(info.value).lower()
    assert str(info.value) == str(info.value).strip()


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(InvalidFilterError):
        parse_filter("(" * 400 + "id = 1" + ")" * 400)


def test_predicate_objects_validate_themselves() -> None:
    with pytest.raises(InvalidFilterError, match="IS NULL|IsNull"):
        Comparison("id", "=", None)
    with pytest.raises(InvalidFilterError, match="operator"):
        Comparison("id", "~", 1)
    with pytest.raises(InvalidFilterError, match="string or"):
        to_predicate(42)  # type: ignore[arg-type]
    assert to_predicate(None) is None
    assert to_predicate("id = 1") == Comparison("id", "=", 1)


def test_columns_of() -> None:
    assert columns_of(parse_filter("a = 1 and (b in (1) or not c is null) and d like 'x%'")) == {"a", "b", "c", "d"}
    assert columns_of(Always(True)) == set()


@pytest.mark.parametrize("text", [
    "id = 5", "s = 'it''s'", "id in (1, 2, null)", "not (x is null)", "s ilike 'A%'",
    "d = DATE '2026-01-31'", "ts >= TIMESTAMP '2026-01-01 10:00:00.5+00:00'", "(id < 1 or id > 9) and b = false",
    "x between -2.5 and 1e3", '"my col" = 1', "true",
])
def test_to_sql_round_trips(text: str) -> None:
    predicate = parse_filter(text)
    assert parse_filter(to_sql(predicate)) == predicate


# --- binding ------------------------------------------------------------------------------

SCHEMA = pa.schema([
    ("id", pa.int64()), ("x", pa.float64()), ("s", pa.string()), ("d", pa.date32()),
    ("ts", pa.timestamp("us", tz="UTC")), ("dec", pa.decimal128(10, 2)), ("b", pa.bool_()),
    ("Mixed_Case", pa.int32()), ("nested", pa.struct([("inner", pa.int64())])),
])


@pytest.mark.parametrize(("text", "expected"), [
    ("ID = 1", Comparison("id", "=", 1)),
    ("mixed_case > 2", Comparison("Mixed_Case", ">", 2)),
    ("NESTED.INNER = 3", Comparison("nested.inner", "=", 3)),
    ("d = '2026-01-01'", Comparison("d", "=", dt.date(2026, 1, 1))),
    ("d in ('2026-01-01', DATE '2026-02-01')", In("d", (dt.date(2026, 1, 1), dt.date(2026, 2, 1)))),
    ("ts > '2026-01-01 10:00:00'", Comparison("ts", ">", dt.datetime(2026, 1, 1, 10, tzinfo=UTC))),
    ("ts > '2026-01-01T10:00:00Z'", Comparison("ts", ">", dt.datetime(2026, 1, 1, 10, tzinfo=UTC))),
    ("ts > DATE '2026-01-01'", Comparison("ts", ">", dt.datetime(2026, 1, 1, tzinfo=UTC))),
    ("x > 2", Comparison("x", ">", 2.0)),
    ("x > '2.5'", Comparison("x", ">", 2.5)),
    ("id = '7'", Comparison("id", "=", 7)),
    ("dec = 1.5", Comparison("dec", "=", decimal.Decimal("1.5"))),
    ("dec < 2", Comparison("dec", "<", decimal.Decimal(2))),
    ("b = 'true'", Comparison("b", "=", True)),
    ("id in (1, null)", In("id", (1, None))),
    ("not (s like 'a%')", Not(Like("s", "a%"))),
])
def test_bind_resolves_names_and_converts_literals(text: str, expected: object) -> None:
    bound = bind(parse_filter(text), SCHEMA)
    assert bound == expected
    if isinstance(expected, Comparison):
        assert type(bound.value) is type(expected.value)  # noqa: E721 - 2 must become 2.0, '7' must become 7


def test_bind_prefers_the_exact_name_and_refuses_ambiguity() -> None:
    schema = pa.schema([("a", pa.int64()), ("A", pa.int64()), ("b", pa.int64())])
    assert bind(parse_filter("A = 1"), schema) == Comparison("A", "=", 1)
    assert bind(parse_filter("a = 1"), schema) == Comparison("a", "=", 1)
    assert bind(parse_filter("B = 1"), schema) == Comparison("b", "=", 1)
    with pytest.raises(ColumnNotFoundError):
        bind(parse_filter("\"A\" = 1"), pa.schema([("aa", pa.int64())]))


@pytest.mark.parametrize(("text", "fragment"), [
    ("id = 'abc'", "cannot be compared"),
    ("d = 'not a date'", "cannot be compared"),
    ("ts > 'yesterday'", "cannot be compared"),
    ("b = 3", "cannot be compared"),
    ("s = 3", "cannot be compared"),
    ("id like '1%'", "string column"),
    ("nested = 1", "cannot compare"),
])
def test_bind_rejects_literals_of_the_wrong_kind(text: str, fragment: str) -> None:
    with pytest.raises(InvalidFilterError, match=fragment):
        bind(parse_filter(text), SCHEMA)


@pytest.mark.parametrize(("text", "suggestion"), [
    ("idd = 1", "'id'"),
    ("ds = '2026-01-01'", "'d'"),
    ("mixed_cas = 1", "'Mixed_Case'"),
    ("nested.iner = 1", "'nested.inner'"),
])
def test_unknown_columns_suggest_close_names(text: str, suggestion: str) -> None:
    with pytest.raises(ColumnNotFoundError, match="did you mean") as info:
        bind(parse_filter(text), SCHEMA)
    assert suggestion in str(info.value)
    assert text.split()[0] in str(info.value)


def test_unknown_column_without_close_match_lists_columns() -> None:
    with pytest.raises(ColumnNotFoundError, match="columns are") as info:
        bind(parse_filter("zzzzzz = 1"), SCHEMA)
    assert "'zzzzzz'" in str(info.value)
    with pytest.raises(ColumnNotFoundError, match="not a struct"):
        bind(parse_filter("id.inner = 1"), SCHEMA)


def test_scan_reports_filter_errors_before_reading(tmp_path) -> None:
    table = lakehouse.create_table(str(tmp_path / "t"), [("id", pa.int64()), ("name", pa.string())])
    with pytest.raises(ColumnNotFoundError, match="'name'"):
        table.scan(filter="nmae = 'x'")
    with pytest.raises(InvalidFilterError, match="column 6"):
        table.scan(filter="id = = 1")
    with pytest.raises(InvalidFilterError):
        table.delete("id = name")


# --- row semantics against DuckDB --------------------------------------------------------

ROWS = pa.table({
    "i": pa.array([1, 2, None, -2**63, 2**63 - 1, 0], pa.int64()),
    "f": pa.array([1.0, math.nan, None, -0.0, math.inf, 2.5], pa.float64()),
    "s": pa.array(["a", "ab", None, "é", "B", ""], pa.string()),
    "dec": pa.array([decimal.Decimal(v) if v else None for v in ["0.30", "1.00", None, "-5.25", "0.10", "2.00"]],
                    pa.decimal128(10, 2)),
    "d": pa.array([dt.date(2026, 1, 1), None, dt.date(2025, 12, 31), dt.date(2026, 1, 2), None, dt.date(2000, 1, 1)]),
    "ts": pa.array([dt.datetime(2026, 1, 1, 0, 0, 0, 999, tzinfo=UTC), None, dt.datetime(2026, 1, 1, tzinfo=UTC),
                    dt.datetime(2030, 1, 1, tzinfo=UTC), dt.datetime(1999, 1, 1, tzinfo=UTC), None],
                   pa.timestamp("us", tz="UTC")),
    "rid": pa.array(range(6), pa.int64()),
})


@pytest.mark.parametrize("text", [
    # three-valued logic
    "i not in (1, 2)", "not (i in (1, null))", "i in (1, null)", "not (i in (null))", "s not in ('a')",
    "not (i = 1)", "not (i = 1 or s = 'a')", "i = 1 or s is null", "not (s like 'a%')", "s not like '%'",
    "i between 0 and 2", "i not between 0 and 2", "not (i > 0 and f > 0)",
    # floats: NaN above every number, -0.0 equal to 0.0
    "f > 2", "f >= 1e300", "f < 3", "f <= 3", "f = 0", "f in (0.0)", "f in (0.0, 2.5)", "f != 1",
    "not (f > 2)", "f not in (1.0)", "f between 0 and 10",
    # integer literals the column type cannot hold
    "i > 2.5", "i < 2.5", "i = 2.0", "i in (1.5, 2)", "i > -9223372036854775809", "i < 9223372036854775808",
    "i = 99999999999999999999", "i >= 1e-3",
    # decimals, dates, timestamps, strings
    "dec < 0.30000000000000001", "dec = 0.3", "dec in (0.3, 1)", "dec > -5.255", "dec != 1",
    "d = '2026-01-01'", "d > DATE '2025-12-31'", "d between '2025-01-01' and '2026-01-01'",
    "ts > TIMESTAMP '2026-01-01 00:00:00.000998'", "ts = TIMESTAMP '2026-01-01 00:00:00.000999'",
    "ts <= '2026-01-01 00:00:00'", "s > 'B'", "s < 'a'", "s = ''", "s like '_'", "s ilike 'b'",
])
def test_row_semantics_match_duckdb(text: str) -> None:
    predicate = bind(parse_filter(text), ROWS.schema)
    got = ds.dataset(ROWS).to_table(filter=to_arrow_expression(predicate, ROWS.schema)).column("rid").to_pylist()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("rows", ROWS)
        want = [r[0] for r in con.execute(f"SELECT rid FROM rows WHERE {text} ORDER BY rid").fetchall()]
    finally:
        con.close()
    assert sorted(got) == want


def test_filtered_scan_and_delete_use_sql_null_semantics(tmp_path) -> None:
    table = lakehouse.create_table(str(tmp_path / "t"), [("i", pa.int64()), ("s", pa.string())])
    table.append(pa.table({"i": pa.array([1, 2, None], pa.int64()), "s": ["a", None, "c"]}))
    assert table.to_arrow(filter="i not in (1)").column("i").to_pylist() == [2]
    assert table.to_arrow(filter="not (i in (1, null))").num_rows == 0
    assert table.delete("i not in (1)")["num_deleted_rows"] == 1
    assert sorted(table.to_arrow().column("s").to_pylist(), key=str) == ["a", "c"]
    assert table.delete("not (s in ('x', null))")["num_deleted_rows"] == 0


# --- negation normal form -------------------------------------------------------------------


def test_negation_normal_form() -> None:
    assert negation_normal_form(parse_filter("not (a < 1 and b >= 2)")) == \
        Or((Comparison("a", ">=", 1), Comparison("b", "<", 2)))
    assert negation_normal_form(parse_filter("not (a = 1 or not b != 2)")) == \
        And((Comparison("a", "!=", 1), Comparison("b", "!=", 2)))
    assert negation_normal_form(parse_filter("not not a > 1")) == Comparison("a", ">", 1)
    assert negation_normal_form(parse_filter("not false")) == Always(True)
    # IN, IS NULL and LIKE keep their NOT: there is no exact flipped form.
    assert negation_normal_form(parse_filter("not (a in (1) and b is null)")) == \
        Or((Not(In("a", (1,))), Not(IsNull("b"))))
    assert negation_normal_form(parse_filter("not s like 'a%'")) == Not(Like("s", "a%"))
