"""Golden tests for the optimizer: each rule visibly changes the plan, and never the answer.

Every query is bound once; the bound plan runs twice through the physical planner, once
with no rules (``optimize(plan, rules=())``) and once optimized, and both answers must be
equal. The assertions on the optimized plan (its node structure, or its EXPLAIN text)
pin down what each rule is for.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
import lakehouse
from engine.errors import PlanError
from engine.logical.display import expr_text, plan_text
from engine.logical.expr import Call, conjuncts
from engine.logical.plan import Filter, Join, Limit, Plan, Project, Scan, Sort, TopN, walk_plan
from engine.optimizer import RULES, optimize
from engine.physical.operators.base import ExecutionContext
from engine.physical.operators.basic import ScanOp
from engine.physical.planner import PhysicalPlan, create_physical_plan
from engine.sql.binder import Binder
from engine.sql.parser import parse

BASE_DATE = dt.date(1993, 1, 1)
ROWS = 800


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """``m``: a lakehouse table of 800 rows in about 10 files, sorted by ``i``; plus in-memory tables."""
    root = tmp_path_factory.mktemp("optimizer")
    table = lakehouse.create_table(str(root / "m"), pa.schema([
        ("i", pa.int64()), ("f", pa.float64()), ("d", pa.date32()), ("p", pa.decimal128(12, 2)), ("s", pa.string()),
    ]))
    ids = np.arange(ROWS)
    table.append(pa.table({
        "i": pa.array(ids, pa.int64()),
        "f": ids / 4,
        "d": [BASE_DATE + dt.timedelta(days=int(x)) for x in ids],  # 1993-01-01 .. 1995-03-11
        "p": pa.array([decimal.Decimal(int(x) % 10) / 100 for x in ids], pa.decimal128(12, 2)),
        "s": [f"s{x % 7}" for x in ids],
    }), target_file_size=80 * 16)
    assert len(table.snapshot().files) >= 8  # several files, so skipping is observable
    s = engine.connect(str(root))
    s.register("small", pa.table({"k": pa.array([1, 2, 3, 500], pa.int64()), "name": ["a", "b", "c", "d"]}))
    s.register("nums", pa.table({"x": [0.07, 0.06 + 0.01, 0.08],
                                 "p": pa.array([decimal.Decimal("0.07"), decimal.Decimal("0.06"), None],
                                               pa.decimal128(10, 2))}))
    return s


# --- helpers ------------------------------------------------------------------------------------


def bind(session: engine.Session, sql: str) -> Plan:
    """The plan exactly as the binder makes it, before any rule."""
    return Binder(session.catalog).bind(parse(sql)[0])


def execute(session: engine.Session, plan: Plan) -> tuple[list[tuple], PhysicalPlan]:
    """Run a logical plan as Session does; rows in output order, and the operators (for metrics)."""
    context = ExecutionContext(session.config.memory_limit, session.config.batch_size)
    physical = create_physical_plan(plan, context)
    table = pa.Table.from_batches(list(physical.root.run()), schema=physical.root.schema)
    return list(zip(*[c.to_pylist() for c in table.columns])), physical


def _sort_key(row: tuple) -> tuple:
    return tuple((v is None, str(type(v)), v) for v in row)


def optimized(session: engine.Session, sql: str, rules=None, *, ordered: bool = False) -> Plan:
    """The plan after ``rules`` (default: all), checked to give the same rows as no rules at all."""
    bound = bind(session, sql)
    before, _ = execute(session, optimize(bound, rules=()))
    after_plan = optimize(bound, rules=rules)
    after, _ = execute(session, after_plan)
    if not ordered:
        before, after = sorted(before, key=_sort_key), sorted(after, key=_sort_key)
    assert after == before, f"rules changed the answer of {sql!r}\n{plan_text(after_plan)}"
    return after_plan


def nodes(plan: Plan, kind: type) -> list:
    return [n for n in walk_plan(plan) if isinstance(n, kind)]


def scan_of(plan: Plan, table: str) -> Scan:
    (scan,) = [s for s in nodes(plan, Scan) if s.table == table]
    return scan


def parent_of(plan: Plan, child: Plan) -> Plan | None:
    return next((n for n in walk_plan(plan) if any(c is child for c in n.inputs())), None)


def rules_named(*names: str) -> tuple:
    return tuple((name, rule) for name, rule in RULES if name in names)


def texts(exprs) -> list[str]:  # noqa: ANN001
    return [expr_text(e) for e in exprs]


# --- simplify: constant folding, OR factoring, date-cast unwrapping ---------------------------


def test_constant_folding(session):
    bound = bind(session, "select i + (1 + 2) as x from m where i < 2 * 3")
    assert "CAST(1 AS BIGINT) + CAST(2 AS BIGINT)" in plan_text(bound)
    plan = optimized(session, "select i + (1 + 2) as x from m where i < 2 * 3", rules_named("simplify"))
    text = plan_text(plan)
    assert "(i#1 + 3) AS x" in text and "(i#1 < 6)" in text
    assert "CAST" not in text


def test_decimal_constants_fold_exactly(session):
    # 0.06 + 0.01 is the DECIMAL 0.07 (as in DuckDB), not the double 0.06999999999999999.
    plan = optimized(session, "select x from nums where x = 0.06 + 0.01", rules_named("simplify"))
    (filter_node,) = nodes(plan, Filter)
    assert expr_text(filter_node.predicate).endswith("= 0.07)")
    rows, _ = execute(session, plan)
    assert rows == [(0.07,)]
    rows = session.sql("select p from nums where p = 0.06 + 0.01").to_arrow().column("p").to_pylist()
    assert rows == [decimal.Decimal("0.07")]


def test_or_factoring_exposes_the_common_condition(session):
    sql = "select i from m where (i = 1 and s = 's1') or (i = 1 and f > 2) or (s = 's3' and i = 1)"
    plan = optimized(session, sql, rules_named("simplify"))
    (filter_node,) = nodes(plan, Filter)
    parts = conjuncts(filter_node.predicate)
    assert texts(parts)[0] == "(i#1 = 1)"  # factored out of all three branches
    assert isinstance(parts[1], Call) and parts[1].name == "or"
    assert "i#1" not in expr_text(parts[1])
    # ...so the full pipeline can push it into the scan, where it is exact.
    plan = optimized(session, sql)
    assert "(i#1 = 1)" in texts(scan_of(plan, "m").filters)


def test_or_factoring_drops_a_branch_that_adds_nothing(session):
    plan = optimized(session, "select i from m where i = 3 or (i = 3 and s = 's3')", rules_named("simplify"))
    (filter_node,) = nodes(plan, Filter)
    assert expr_text(filter_node.predicate) == "(i#1 = 3)"


def test_date_plus_interval_becomes_a_scan_filter_on_the_date_column(session):
    sql = "select i from m where d < date '1994-01-01' + interval '1' year"
    bound = bind(session, sql)
    assert "CAST(d#3 AS TIMESTAMP)" in plan_text(bound)
    plan = optimized(session, sql)
    scan = scan_of(plan, "m")
    assert texts(scan.filters) == ["(d#3 < 1995-01-01)"]
    assert nodes(plan, Filter) == []  # a date comparison is exact: no filter above the scan
    rows, physical = execute(session, plan)
    assert len(rows) == (dt.date(1995, 1, 1) - BASE_DATE).days
    metrics = physical.operator_for(scan).metrics.extra
    assert metrics["files_skipped"] > 0  # the unwrapped filter reached the file statistics


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "=", "<>"])
@pytest.mark.parametrize("bound", ["timestamp '1994-06-01 00:00:00'", "timestamp '1994-06-01 12:30:00'",
                                   "date '1994-05-31' + interval '36' hour"])
def test_date_cast_unwrapping_keeps_boundary_rows(session, op, bound):
    # Midnight and mid-day bounds round in the direction that keeps exactly the same rows.
    optimized(session, f"select i, d from m where d {op} {bound}")


# --- pushdown ---------------------------------------------------------------------------------------


def test_exact_pushdown_removes_the_filter(session):
    sql = "select i, s from m where i between 100 and 119"
    plan = optimized(session, sql, rules_named("simplify", "pushdown"))
    assert texts(scan_of(plan, "m").filters) == ["(i#1 >= 100)", "(i#1 <= 119)"]
    assert nodes(plan, Filter) == []
    full = optimize(bind(session, sql))
    rows, physical = execute(session, full)
    assert sorted(r[0] for r in rows) == list(range(100, 120))
    extra = physical.operator_for(scan_of(full, "m")).metrics.extra
    assert extra["files_scanned"] < extra["files_total"]


def test_inexact_pushdown_keeps_the_filter(session):
    # A float comparison is only used to skip files: the engine re-checks every row.
    plan = optimized(session, "select i from m where f >= 150.0", rules_named("simplify", "pushdown"))
    scan = scan_of(plan, "m")
    assert texts(scan.filters) == ["(f#2 >= 150.0)"]
    (filter_node,) = nodes(plan, Filter)
    assert filter_node.input is scan and expr_text(filter_node.predicate) == "(f#2 >= 150.0)"


def test_unsupported_pushdown_stays_above_the_scan(session):
    plan = optimized(session, "select i from m where i % 7 = 3", rules_named("simplify", "pushdown"))
    assert scan_of(plan, "m").filters == ()
    assert len(nodes(plan, Filter)) == 1


def test_pushdown_through_project(session):
    plan = optimized(session, "select * from (select i, f * 2 as g from m) where i > 5 and g > 3")
    scan = scan_of(plan, "m")
    assert texts(scan.filters) == ["(i#1 > 5)"]
    # g > 3 was rewritten in terms of the scan's column (f * 2) and moved below the projection.
    (filter_node,) = nodes(plan, Filter)
    assert filter_node.input is scan and expr_text(filter_node.predicate) == "((f#2 * 2.0) > 3.0)"


def test_pushdown_through_aggregate_only_for_group_keys(session):
    plan = optimized(session, "select s, c from (select s, count(*) as c from m group by s) where s = 's1' and c > 3")
    assert texts(scan_of(plan, "m").filters) == ["(s#5 = 's1')"]
    (having,) = nodes(plan, Filter)
    assert "count_star" in expr_text(having.predicate)  # the aggregate's condition stays above it


def test_pushdown_through_join_to_each_side(session):
    sql = "select m.i, small.name from m join small on m.i = small.k where m.i < 400 and small.name <> 'c'"
    plan = optimized(session, sql)
    assert texts(scan_of(plan, "m").filters) == ["(i#1 < 400)"]
    small = scan_of(plan, "small")
    above = parent_of(plan, small)
    assert isinstance(above, Filter) and expr_text(above.predicate) == "(name#7 <> 'c')"  # memory: unsupported
    (join,) = nodes(plan, Join)
    assert join.kind == "inner" and expr_text(join.condition) == "(i#1 = k#6)"


def test_left_join_on_condition_goes_to_the_right_input_only(session):
    sql = ("select m.i, small.name from m left join small on m.i = small.k and small.name <> 'b' and m.i > 1 "
           "where m.i < 5")
    plan = optimized(session, sql)
    (join,) = nodes(plan, Join)
    assert join.kind == "left"
    # The right-only ON condition filters the right input; the left-only one must stay in ON:
    # pushed to the left it would drop rows that a LEFT JOIN keeps (with NULLs).
    right_filter = parent_of(plan, scan_of(plan, "small"))
    assert isinstance(right_filter, Filter) and expr_text(right_filter.predicate) == "(name#7 <> 'b')"
    assert sorted(texts(conjuncts(join.condition))) == ["(i#1 = k#6)", "(i#1 > 1)"]
    assert texts(scan_of(plan, "m").filters) == ["(i#1 < 5)"]  # WHERE on the left side may go down
    rows = sorted(execute(session, plan)[0], key=_sort_key)
    assert rows == [(0, None), (1, None), (2, None), (3, "c"), (4, None)]


def test_where_on_the_right_of_a_left_join_is_not_pushed(session):
    plan = optimized(session, "select m.i from m left join small on m.i = small.k where small.name is null and m.i < 5")
    (join,) = nodes(plan, Join)
    above = parent_of(plan, join)
    assert isinstance(above, Filter) and expr_text(above.predicate) == "name#7 IS NULL"
    assert parent_of(plan, scan_of(plan, "small")) is join


# --- pruning and limits ----------------------------------------------------------------------------


def test_projection_pruning_reads_only_needed_columns(session):
    sql = "select s from m where i < 10"
    unpruned = optimize(bind(session, sql), rules_named("simplify", "pushdown"))
    assert scan_of(unpruned, "m").columns == ("i", "f", "d", "p", "s")
    plan = optimized(session, sql)
    assert scan_of(plan, "m").columns == ("i", "s")
    plan = optimized(session, "select count(*) from m")
    assert len(scan_of(plan, "m").columns) == 1  # one column is still read to count rows


def test_sort_plus_limit_becomes_top_n(session):
    sql = "select i, f from m order by f desc, i limit 5 offset 2"
    plan = optimized(session, sql, ordered=True)
    assert nodes(plan, Sort) == [] and nodes(plan, Limit) == []
    (top,) = nodes(plan, TopN)
    assert (top.count, top.offset) == (5, 2)
    assert "TopN 5 offset 2 by" in plan_text(plan)
    rows, _ = execute(session, plan)
    assert [r[0] for r in rows] == [797, 796, 795, 794, 793]


def test_limit_over_a_scan_stops_the_scan_early(session):
    sql = "select i, s from m limit 3"
    plan = optimized(session, sql)
    scan = scan_of(plan, "m")
    assert scan.limit == 3 and "limit=3" in plan_text(plan)
    _, physical = execute(session, plan)
    assert physical.operator_for(scan).metrics.rows == 3
    plain = optimize(bind(session, sql), rules=())
    _, physical = execute(session, plain)
    (scan_op,) = [op for op in physical.by_node.values() if isinstance(op, ScanOp)]
    assert scan_op.metrics.rows > 3  # without the rule the scan hands over a whole file first


def test_limit_is_not_pushed_below_a_filter(session):
    plan = optimized(session, "select i from m where f > 100 limit 3")
    assert scan_of(plan, "m").limit is None


# --- join order ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stars():
    s = engine.connect(None)
    s.register("tiny", pa.table({"t_id": [1, 2, 3], "t_name": ["a", "b", "c"]}))
    s.register("medium", pa.table({"m_id": np.arange(40), "m_t": np.arange(40) % 3 + 1}))
    s.register("large", pa.table({"l_id": np.arange(400), "l_m": np.arange(400) % 40}))
    return s


def _leftmost_scan(plan: Plan) -> Scan:
    node = plan
    while not isinstance(node, Scan):
        node = node.left if isinstance(node, Join) else node.inputs()[0]
    return node


def test_join_order_probes_the_large_table_without_cross_joins(stars):
    sql = ("select t_name, count(*) as n from tiny, medium, large "
           "where t_id = m_t and m_id = l_m group by t_name")
    without = optimize(bind(stars, sql), tuple(r for r in RULES if r[0] != "join_order"))
    assert _leftmost_scan(without).table == "tiny"  # the FROM order: the large table is a build side
    plan = optimized(stars, sql)
    joins = nodes(plan, Join)
    assert len(joins) == 2 and all(j.kind == "inner" and j.condition is not None for j in joins)
    assert _leftmost_scan(plan).table == "large"  # the probe side of the bottom join
    # Each build (right) side is a small input, the tiny table last.
    assert [_leftmost_scan(j.right).table for j in joins] == ["tiny", "medium"]
    rows, _ = execute(stars, plan)
    assert sorted(rows) == [("a", 14 * 10), ("b", 13 * 10), ("c", 13 * 10)]  # medium ids per tiny id * 10


def test_join_order_keeps_the_output_columns(stars):
    sql = "select l_id, t_name, m_id from tiny, medium, large where t_id = m_t and m_id = l_m and l_id < 5"
    plan = optimized(stars, sql)
    assert [f.name for f in plan.fields] == ["l_id", "t_name", "m_id"]


# --- the schema check ----------------------------------------------------------------------------


def test_schema_check_catches_a_rule_that_changes_the_output(session):
    plan = bind(session, "select i, s from m")

    def drop_last_column(node: Plan) -> Plan:
        assert isinstance(node, Project)
        return replace(node, exprs=node.exprs[:-1], output=node.output[:-1])

    def rename(node: Plan) -> Plan:
        assert isinstance(node, Project)
        return replace(node, output=(replace(node.output[0], name="other"),) + node.output[1:])

    for name, rule in (("drop_last_column", drop_last_column), ("rename", rename)):
        with pytest.raises(PlanError, match=f"rule '{name}' changed the query's output columns"):
            optimize(plan, rules=(("simplify", RULES[0][1]), (name, rule)))


def test_every_rule_keeps_the_output_schema(session):
    plan = bind(session, "select s, count(*) as c from m where i < 50 group by s order by c desc limit 2")
    assert [f.name for f in optimize(plan).fields] == ["s", "c"]


# --- property: rules never change an answer ---------------------------------------------------------

_COLUMNS = {
    "i": st.integers(-5, ROWS + 5).map(str),
    "f": st.sampled_from(["0.25", "10.5", "100.0", "199.75", "-1.0"]),
    "d": st.sampled_from(["date '1993-01-01'", "date '1994-03-15'", "date '1995-12-31'",
                          "timestamp '1994-02-01 06:00:00'", "date '1993-06-01' + interval '1' month"]),
    "s": st.sampled_from(["'s0'", "'s3'", "'zz'"]),
    "p": st.sampled_from(["0.05", "0.03 + 0.02", "0.1"]),
}


@st.composite
def predicates(draw, depth: int = 0):  # noqa: ANN001, ANN201
    if depth < 2 and draw(st.booleans()):
        op = draw(st.sampled_from(["and", "or"]))
        left, right = draw(predicates(depth + 1)), draw(predicates(depth + 1))
        negate = "not " if draw(st.booleans()) else ""
        return f"{negate}({left} {op} {right})"
    column = draw(st.sampled_from(sorted(_COLUMNS)))
    op = draw(st.sampled_from(["=", "<>", "<", "<=", ">", ">="]))
    return f"{column} {op} {draw(_COLUMNS[column])}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=predicates(), limit=st.sampled_from(["", " order by i limit 7"]))
def test_rules_never_change_the_answer(session, where, limit):
    optimized(session, f"select i, s from m where {where}{limit}", ordered=bool(limit))
