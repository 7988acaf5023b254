"""Our own differential corpus: every query runs on our engine and on DuckDB over the same data.

Tables come from :func:`differential.make_tables` (many NULLs, every type, one empty table).
``t`` is also written as a lakehouse table of five files, and every query reading ``t`` runs
over it too (``LAKEHOUSE``), so the lakehouse datasource path (filter pushdown, file
skipping) is compared as well. ``Q(sql, ordered)``: ``ordered=True`` only when ORDER BY fully
determines the row sequence (``t.id`` and ``u.uid`` are unique keys used as tie-breakers).

Documented differences the corpus does not exercise (DuckDB-specific choices):
- ``LIKE`` without ESCAPE: we treat backslash as the escape (PostgreSQL), DuckDB has none;
- ``//`` on DOUBLE/DECIMAL: DuckDB divides without flooring (7.5 // 2 = 3.75), we floor;
- integer ``//`` and ``%`` by zero: NULL here as in DuckDB <= 1.x; DuckDB 2.0 raises
  (see ``test_division_by_zero_is_null_as_in_duckdb_legacy_mode``);
- NaN ordering/equality and -0.0: see ``NAN_CORPUS``.
"""

from __future__ import annotations

import re

import duckdb
import pytest

import engine
import lakehouse
from tests.engine.differential import Query, assert_same_result, make_tables


def Q(sql: str, ordered: bool, *, xfail: str | None = None, lake: bool | None = None) -> tuple:
    """A corpus entry; ``xfail`` names a known engine bug (strict). ``lake``: run it over the
    lakehouse copy of ``t`` too; by default every query reading ``t`` does."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    query = Query(" ".join(sql.split()), ordered)
    if lake is None:
        lake = re.search(r"\b(from|join)\s+t\b", query.sql, re.IGNORECASE) is not None
    return pytest.param(query, marks=marks), lake


# fmt: off
_CORPUS = [
    # --- SELECT / WHERE / ORDER BY / LIMIT / DISTINCT -----------------------------------
    Q("select * from t", False),
    Q("select id, i, s from t where i > 100 order by id", True),
    Q("select id, f from t where f <= -100.5 or f >= 400 order by f desc, id", True),
    Q("select id, s from t where s = 'apple' order by id", True),
    Q("select id from t where b order by id", True),
    Q("select id from t where not b order by id", True),
    Q("select id, d from t where d > 500.00 order by d, id", True),
    Q("select id, dt from t where dt >= date '2022-06-01' and dt < date '2022-09-01' order by dt, id", True),
    Q("select id, ts from t where ts < timestamp '2021-05-01 00:00:00' order by ts, id", True),
    Q("select id, i from t where id between 50 and 60 order by id", True),
    Q("select id, i from t where id in (3, 17, 250, 999) order by id", True),
    Q("select id from t where id > 290 or id < 5 order by id", True),
    Q("select i, id from t order by i nulls first, id", True),
    Q("select i, id from t order by i desc nulls last, id", True),
    Q("select i, id from t order by i desc, id", True),
    Q("select i, id from t order by i asc, id desc", True),
    Q("select s, id from t order by s desc nulls first, id limit 20", True),
    Q("select id, g from t order by g nulls first, id desc limit 15 offset 10", True),
    Q("select id from t order by id limit 0", True),
    Q("select id from t order by id desc limit 5 offset 295", True),
    Q("select id, f from t order by f, id limit 7", True),
    Q("select distinct g from t", False),
    Q("select distinct g, b from t", False),
    Q("select distinct s from t order by s nulls first", True),
    Q("select count(*) as c from (select distinct i % 10 as m from t) as x", False),
    Q("select id * 2 as twice, id + i as plus, -i as neg from t where id <= 30", False),
    Q("select t.* from t where t.g = 3", False),
    Q("select * from e", False),
    Q("select * from e where i > 0 order by id", True),
    Q("select g, i from t order by 1 nulls first, 2 nulls first, id limit 40", True),
    Q("select id as x from t order by x desc limit 3", True),
    Q("select * from t where id = 1 or (g = 2 and i < 0) order by id", True),
    Q("select id, s from t where s is null order by id", True),
    Q("select id, s from t where s is not null and s <> '' order by id", True),

    # --- aggregates -----------------------------------------------------------------------
    Q("select count(*) as n, count(i) as ni, count(s) as ns, count(b) as nb from t", False),
    Q("select sum(i) as s, avg(i) as a, min(i) as lo, max(i) as hi from t", False),
    Q("select sum(f) as s, avg(f) as a, min(f) as lo, max(f) as hi from t", False),
    Q("select sum(d) as s, avg(d) as a, min(d) as lo, max(d) as hi from t", False),
    Q("select min(s) as lo, max(s) as hi, min(dt) as d0, max(dt) as d1, min(ts) as t0, max(ts) as t1 from t", False),
    Q("select count(distinct g) as dg, count(distinct s) as ds, sum(distinct g) as sg from t", False),
    Q("select stddev(f) as sd, variance(f) as v, stddev(i) as sdi, variance(i) as vi from t", False),
    Q("select stddev_pop(f) as sd, var_pop(f) as v from t", False),
    Q("select g, count(*) as n, sum(i) as si, avg(f) as af from t group by g", False),
    Q("select g, b, count(*) as n, min(s) as ms from t group by g, b", False),
    Q("select g, count(*) as n from t group by g order by n desc, g nulls first", True),
    Q("select g, sum(i) as si from t group by g having sum(i) > 0", False),
    Q("select g, count(*) as n from t group by g having count(*) > 35 order by g", True),
    Q("select g, avg(d) as ad from t where i > 0 group by g having avg(d) is not null", False),
    Q("select count(*) as n, sum(i) as s, avg(f) as a, min(s) as m, max(dt) as x from e", False),
    Q("select g, count(*) as n, sum(i) as s from e group by g", False),
    Q("select count(*) as n, sum(i) as s from t where 1 = 0", False),
    Q("select g, sum(i) as s, avg(i) as a, count(i) as c from t where i is null group by g", False),
    Q("select sum(i) filter (where b) as sb, count(*) filter (where i > 0) as pos, avg(f) filter (where g = 1) as a1 from t", False),
    Q("select g, count(*) filter (where s is null) as nulls, sum(i) filter (where i < 0) as neg from t group by g", False),
    Q("select g % 3 as m, count(*) as n from t group by g % 3", False),
    Q("select g % 3 as m, count(*) as n from t group by m", False),
    Q("select g, b, sum(i) as s, count(*) + 1 as c from t group by all", False),
    Q("select extract(year from dt) as y, count(*) as n from t group by 1", False),
    Q("select b, count(distinct g) as n, max(i) - min(i) as spread from t group by b", False),
    Q("select count(*) as n from t having count(*) > 1000", False),
    Q("select g, max(s) as ms, min(d) as md from t group by g having min(d) < 0 order by g nulls last", True),
    Q("select sum(qty * amount) as v, count(distinct label) as nl from u", False),
    Q("select label, sum(amount) as a, avg(qty) as q from u group by label", False),
    Q("select g, sum(i) / count(i) as ratio from t group by g having count(i) > 0", False),
    Q("select count(*) as n from (select distinct g, b from t) as x", False),
    Q("select bool_and(b) as ba, bool_or(b) as bo from t", False),
    Q("select id, any_value(s) as a, arbitrary(dt) as b from t group by id", False),
    Q("select id, first(i) as f, last(s) as l from t where id < 20 group by id", False),

    # --- joins ----------------------------------------------------------------------------
    Q("select t.id, u.uid from t join u on t.id = u.t_id", False),
    Q("select t.id, u.uid from t inner join u on t.id = u.t_id and u.qty > 10 order by u.uid", True),
    Q("select t.id, u.uid, u.amount from t left join u on t.id = u.t_id where t.id < 60", False),
    Q("select t.id, u.uid from t right join u on t.id = u.t_id", False),
    Q("select t.id, u.uid from t full join u on t.id = u.t_id", False),
    Q("select t.id, u.uid from t full outer join u on t.id = u.t_id and t.g = u.g", False),
    Q("select k.key, u.uid from k cross join u where u.uid <= 5", False),
    Q("select count(*) as n from t cross join k", False),
    Q("select t.g, k.name from t join k on t.g = k.key", False),
    Q("select t.id, k.name from t left join k on t.g = k.key where t.id <= 40", False),
    Q("select id from t semi join u on t.id = u.t_id", False),
    Q("select id from t anti join u on t.id = u.t_id", False),
    Q("select k.key from k anti join t on k.key = t.g", False),
    Q("select t.id, u.uid from t join u on t.id = u.t_id or t.g = u.g where t.id < 20", False),
    Q("select t.id, u.uid from t join u on t.i > u.qty * 30 where t.id < 10 and u.uid < 30", False),
    Q("select t.id, u.uid from t left join u on t.g = u.g and t.i < u.qty where t.id < 15", False),
    Q("select a.id as a_id, b.id as b_id from t as a join t as b on a.i = b.i and a.id < b.id", False),
    Q("select a.id, b.id as prev from t as a left join t as b on b.id = a.id - 1 where a.id <= 10", False),
    Q("select t.id, u.uid, k.name from t join u on t.id = u.t_id join k on u.g = k.key", False),
    Q("select t.g, count(u.uid) as n, sum(u.amount) as total from t left join u on t.id = u.t_id group by t.g", False),
    Q("select t.id, u.uid from t join u using (g) where t.id < 5 and u.uid < 20", False),
    Q("select t.id from t, u where t.id = u.t_id and u.label = 'red'", False),
    Q("select t.id, e.id as eid from t left join e on t.id = e.id where t.id < 5", False),
    Q("select count(*) as n from t join e on t.id = e.id", False),
    Q("select t.id, e.id as eid from t full join e on t.id = e.id where t.id > 295", False),
    Q("select k1.key as a, k2.key as b from k as k1 join k as k2 on k1.key = k2.key", False),
    Q("select k1.name, k2.name as n2 from k as k1 join k as k2 on k1.key is not distinct from k2.key", False),
    Q("select t.id, u.uid from t join u on t.dt = u.day", False),
    Q("select t.id, u.uid from t left join u on t.id = u.t_id and u.label is null where t.id between 100 and 140", False),

    # --- subqueries -----------------------------------------------------------------------
    Q("select id from t where g in (select key from k)", False),
    Q("select id from t where g not in (select key from k)", False),
    Q("select id from t where g not in (select key from k where key is not null)", False),
    Q("select key from k where key not in (select g from t)", False),
    Q("select key from k where key not in (select g from t where g is not null)", False),
    Q("select key, key in (select g from t where g is not null) as present from k", False),
    Q("select key, key not in (select key from k where key < 3) as absent from k", False),
    Q("select id from t where exists (select 1 from u where u.t_id = t.id and u.qty > 20)", False),
    Q("select id from t where not exists (select 1 from u where u.t_id = t.id)", False),
    Q("select uid from u where exists (select * from t where t.id = u.t_id and t.b)", False),
    Q("select id, i from t where i > (select avg(i) from t) order by id", True),
    Q("select id from t where i = (select max(i) from t)", False),
    Q("select id, (select count(*) from u) as n from t where id < 4", False),
    Q("select id, (select max(amount) from u where u.t_id = t.id) as best from t where id < 50", False),
    Q("select id, (select count(*) from u where u.t_id = t.id) as n from t where id < 50", False),
    Q("select uid, amount from u where amount > (select avg(amount) from u as v where v.g = u.g)", False),
    Q("select g, count(*) as n from t group by g having count(*) > (select count(*) / 10 from t)", False),
    Q("select id from t where id in (select t_id from u where g in (select key from k where w > 1))", False),
    Q("select x.g, x.n from (select g, count(*) as n from t group by g) as x where x.n > 30", False),
    Q("select id from t where i > (select min(qty) from u where u.t_id = t.id)", False),
    Q("select id from t where g in (select key from k) and id not in (select t_id from u where t_id is not null)", False),
    Q("select (select max(id) from e) as m, (select count(*) from e) as c", False),
    Q("select id from t where exists (select 1 from k where k.key = t.g) and not exists (select 1 from u where u.t_id = t.id)", False),
    Q("select id from t where (select count(*) from u where u.g = t.g) > 20", False),
    Q("select * from (select * from (select id, i from t where i > 0) as a where id < 100) as b where i < 500", False),
    Q("select id from t where g not in (select key from k where key > 100)", False),
    Q("select id, g not in (select key from k where key > 100) as x, g in (select key from k where key > 100) as y from t", False),
    Q("select id from t where exists (select 1 from u where u.t_id = t.id and u.qty > t.g)", False),
    Q("select id from t where id in (select t_id from u where u.g = t.g)", False),
    Q("select id from t where not exists (select 1 from u where u.t_id = t.id) or g = 1", False),
    Q("select g, (select count(*) from k where k.key = t.g) as c from t group by g", False),
    Q("select g, count(*) as n from t group by g having exists (select 1 from k where k.key = t.g)", False),
    Q("select g, sum(i) as s from t group by g having sum(i) > (select avg(qty) from u where u.g = t.g)", False),

    # --- CTEs and set operations ------------------------------------------------------------
    Q("with c as (select g, count(*) as n from t group by g) select * from c where n > 30", False),
    Q("with c as (select g, sum(i) as s from t group by g) select a.g, a.s, b.s as s2 from c as a join c as b on a.g = b.g + 1", False),
    Q("with big as (select id, i from t where i > 500) select id from t where id in (select id from big) and i < 900", False),
    Q("with a as (select id from t where g = 1), b as (select id from a where id > 100) select count(*) as n from b", False),
    Q("with a as (select id from t where g = 1), b as (select id from a where id > 100) select count(id) as n, max(id) as m from b", False),
    Q("select count(*) as n from (select key from k) as x", False),
    Q("select exists (select 1 from t) as e, not exists (select 1 from e) as ne", False),
    Q("select id from t where exists (select 1 from k where key > 5) and id < 10", False),
    Q("with c as (select key from k) select id from t where g in (select key from c) and g > (select min(key) from c)", False),
    Q("select g from t union select key from k", False),
    Q("select g from t union all select key from k", False),
    Q("select g, b from t intersect select key, true from k", False),
    Q("select key from k intersect select g from t", False),
    Q("select key from k except select g from t where g < 3", False),
    Q("select g from t except select key from k", False),
    Q("select key, name from k union all select key, name from k", False),
    Q("select key, name from k union select key, name from k", False),
    Q("select key from k intersect all select key from k where key <> 1", False),
    Q("select key from k except all select key from k where key = 2", False),
    Q("select id from t where id < 5 union all select id from e union all select uid from u where uid < 3", False),
    Q("select id, s from t where id < 5 union select id, s from t where id < 8 order by id", True),
    Q("select 1 as a, 'x' as b union all select null, null union all select 2, 'y'", False),
    Q("select key, name from k where key = 1 union all select null, null from k where key = 2", False),
    Q("select key, name from k where key = 1 union all select null, name from k where key = 2", False),

    # --- CASE / CAST / COALESCE / NULLIF / BETWEEN / IN / LIKE ------------------------------
    Q("select id, case when i > 0 then 'pos' when i < 0 then 'neg' else 'zero-or-null' end as c from t", False),
    Q("select id, case when i > 0 then 'pos' when i < 0 then 'neg' end as c from t", False),
    Q("select id, case g when 1 then 'one' when 2 then 'two' else 'other' end as c from t", False),
    Q("select id, case g when null then 'null' else 'x' end as c from t where id < 30", False),
    Q("select id, case when b then i else -i end as v from t", False),
    Q("select id, cast(i as double) / 7 as x, cast(f as bigint) as fi, cast(d as double) as dd from t", False),
    Q("select id, cast(i as varchar) as vs, cast(dt as varchar) as ds, cast(b as varchar) as bs from t", False),
    Q("select cast('42' as integer) as a, cast('2023-02-28' as date) as b, cast(3.7 as integer) as c, cast(-3.5 as integer) as d", False),
    Q("select id, try_cast(s as integer) as si, try_cast(s as date) as sd from t", False),
    Q("select try_cast('x' as integer) as a, try_cast('12' as bigint) as b, try_cast('1.5' as double) as c", False),
    Q("select id, cast(i as decimal(10, 2)) as di, cast(f as decimal(12, 3)) as df from t", False),
    Q("select id, coalesce(i, g, -1) as c, coalesce(s, '<null>') as cs from t", False),
    Q("select id, nullif(g, 3) as ng, nullif(s, '') as ns from t", False),
    Q("select id from t where i between -10 and 10 order by id", True),
    Q("select id from t where i not between -900 and 900 order by id", True),
    Q("select id from t where dt between date '2021-01-01' and date '2021-03-31'", False),
    Q("select id from t where g in (1, 3, null)", False),
    Q("select id from t where g not in (1, 3, null)", False),
    Q("select id, g in (1, 3, null) as x, g not in (1, 2) as y from t", False),
    Q("select id, s from t where s like 'a%'", False),
    Q("select id, s from t where s ilike 'a%'", False),
    Q("select id, s from t where s not like '%a%'", False),
    Q("select id, s from t where s like '_o_'", False),
    Q("select id, s from t where s like '%!_%' escape '!'", False),
    Q("select id, s from t where s not like '%#%%' escape '#' and s ilike 'A#_B%' escape '#'", False),
    Q("select id, s from t where s like 'a_b%c'", False),
    Q("select id, s ilike '%CASE%' as x from t", False),

    # --- strings --------------------------------------------------------------------------
    Q("select id, upper(s) as u, lower(s) as l, length(s) as n from t", False),
    Q("select id, substring(s, 2, 3) as a, substring(s, 0, 2) as b, substring(s, -3, 2) as c from t", False),
    Q("select id, substring(s, 3) as a, substr(s, -2) as b, substring(s, 1, 0) as c from t", False),
    Q("select id, trim(s) as a, ltrim(s) as b, rtrim(s) as c from t", False),
    Q("select id, concat(s, '-', g) as a, s || '!' as b, concat(s, null) as c from t", False),
    Q("select id, replace(s, 'a', 'A') as r, starts_with(s, 'a') as sw from t", False),
    Q("select id, split_part(s, ',', 2) as p2, split_part(s, '-', 1) as p1, split_part(s, ',', 5) as p5 from t", False),
    Q("select id, left(s, 2) as l, right(s, 3) as r from t", False),
    Q("select id, strpos(s, 'a') as p, strpos(s, '') as e from t", False),
    Q("select s, count(*) as n from t group by s", False),
    Q("select upper(s) as us, count(*) as n from t group by upper(s)", False),
    Q("select id, length(s) + length(label) as n from t join u on t.id = u.t_id", False),
    Q("select s from t where lower(s) = 'apple' order by s, id", False),
    Q("select s, id from t where s is not null order by s, id", True),
    Q("select id, reverse(s) as r, repeat(s, 2) as rr from t", False),
    Q("select id, lpad(s, 6, '*') as l, rpad(s, 6, '*') as r from t", False),
    Q("select id, ends_with(s, 'e') as ew, contains(s, 'an') as c from t", False),
    Q("select 'abc' || 'def' as a, upper('straße') as b, length('日本語') as c", False),
    Q("select id, substring(s, 2, -1) as a, substring(s, -1, -2) as b, substring(s, g - 3, i % 4) as c from t", False),
    Q("select id, left(s, -1) as a, right(s, -2) as b, right(s, 100) as c from t", False),
    Q("select id, strpos(s, 'ö') as a, strpos(s, '語') as b, strpos(s, '') as c from t", False),
    Q("select id, split_part(s, '', 2) as a, split_part(s, '', -1) as b, split_part(s, ',', -2) as c, split_part(s, ',', 0) as d from t", False),
    Q("select id, replace(s, '', 'x') as a, replace(s, 'p', '') as b from t", False),
    Q("select s like null as a, null like null as b, lpad(s, null, '*') as c, split_part(s, null, 1) as d from t", False),
    Q("select lpad('abcdefgh', 3, '*') as l, rpad('日本', 4, 'ü') as r, lpad('x', 0, '*') as z, repeat('ab', -2) as n", False),

    # --- dates and times ------------------------------------------------------------------
    Q("select id, dt + interval 10 day as a, dt - interval 1 month as b, dt + interval 1 year as c from t", False),
    Q("select id, ts + interval 36 hour as a, ts - interval 2 day as b from t", False),
    Q("select date '2024-01-31' + interval 1 month as a, date '2024-02-29' + interval 1 year as b, date '2023-03-31' - interval 1 month as c", False),
    Q("select id, extract(year from dt) as y, extract(month from dt) as m, extract(day from dt) as d from t", False),
    Q("select id, extract(dow from dt) as dw, extract(doy from dt) as dy, extract(quarter from dt) as q from t", False),
    Q("select id, extract(hour from ts) as h, extract(minute from ts) as mi, extract(second from ts) as se from t", False),
    Q("select id, year(dt) as y, month(dt) as m, day(dt) as d from t", False),
    Q("select id, date_trunc('month', dt) as m, date_trunc('year', dt) as y, date_trunc('quarter', dt) as q from t", False),
    Q("select id, date_trunc('day', ts) as d, date_trunc('hour', ts) as h, date_trunc('month', ts) as m from t", False),
    Q("select id, dt - date '2020-01-01' as days from t", False),
    Q("select t.id, u.uid, t.dt - u.day as diff from t join u on t.id = u.t_id", False),
    Q("select id from t where dt > date '2022-01-01' - interval 3 month", False),
    Q("select id from t where ts >= timestamp '2021-06-01 12:00:00' and ts < timestamp '2021-06-30'", False),
    Q("select date_trunc('month', dt) as m, count(*) as n from t group by 1", False),
    Q("select extract(year from dt) as y, extract(quarter from dt) as q, sum(i) as s from t group by 1, 2", False),
    Q("select id, cast(ts as date) as d, cast(dt as timestamp) as t2 from t", False),
    Q("select date '2020-02-29' as a, timestamp '2020-02-29 23:59:59' as b, date '2021-12-31' - date '2021-01-01' as c", False),
    # not over the lakehouse: it stores naive timestamps as UTC, and TIMESTAMPTZ prints '+00'
    Q("select id, cast(ts as varchar) as a, cast(dt as varchar) as b from t", False, lake=False),
    Q("select make_date(2020, 2, 29) as a, make_date(i, 1, 1) as b from t where i > 0", False),
    Q("select id, dt + 1 as a, dt - 7 as b from t", False),

    # --- math -----------------------------------------------------------------------------
    Q("select id, i + g as a, i - g as b, i * g as c, i / g as d from t", False),
    Q("select id, i // 7 as a, i % 7 as b, -i // 7 as c, -i % 7 as d from t", False),
    Q("select id, i / 0 as a, f / 0 as b, -i / 0 as c, 0 / 0 as d from t where id < 40", False),
    Q("select id, f / 3 as a, f * 2.5 as b, f + i as c, f % 7 as m from t", False),
    Q("select id, d + 1 as a, d * 2 as b, d / 4 as c, d - i as e from t", False),
    Q("select id, abs(i) as a, abs(f) as b, abs(d) as c from t", False),
    Q("select id, round(f) as a, round(f, 1) as b, round(f, -2) as c, round(d, 1) as e, round(i, -1) as r from t", False),
    Q("select round(2.5) as a, round(-2.5) as b, round(0.125, 2) as c, round(-1234.5678, -2) as d, round(1234.5678, 2) as e", False),
    Q("select id, floor(f) as a, ceil(f) as b, floor(d) as c, ceil(d) as e from t", False),
    Q("select id, sqrt(abs(f)) as a, power(g, 2) as b, ln(abs(f) + 1) as c, sqrt(i) as s from t where i >= 0 or i is null", False),
    Q("select id, power(2, g) as p, power(f, 0) as z from t", False),
    Q("select 7 / 2 as a, 7 // 2 as b, 7 % 2 as c, -7 // 2 as d, -7 % 2 as e, 7.0 / 2 as f", False),
    Q("select 1e308 * 10 as a, -1e308 * 10 as b, 0.1 + 0.2 as c", False),
    Q("select id, g * 1.5 as a, i * 0.01 as b, d * 0.5 as c from t", False),
    Q("select greatest(i, g, 0) as gr, least(i, g) as le from t", False),
    Q("select id, sign(i) as si, sign(f) as sf from t", False),
    Q("select sum(d * 2) as a, avg(d / 3) as b, sum(i * 1.5) as c from t", False),
    Q("select 9223372036854775807 as big, -9223372036854775807 - 1 as small", False),
    Q("select id, sign(d) as a, log(abs(f) + 1) as b, log(2, abs(i) + 1) as c, log10(abs(f) + 1) as e, log2(g + 1) as h from t", False),
    Q("select cast(' 42 ' as integer) as a, cast(' 1.5' as double) as b, cast(12345678 as decimal(10, 2)) as c", False),
    Q("select id, cast(f as varchar) as a, cast(f / 7 as varchar) as b, cast(cast(f as float) as varchar) as c from t", False),
    Q("select null = null as a, null < 1 as b, nullif(null, null) as c, case null when null then 1 else 2 end as d", False),

    # --- window functions -----------------------------------------------------------------
    Q("select id, row_number() over (order by id) as rn from t", False),
    Q("select id, g, row_number() over (partition by g order by id) as rn from t", False),
    Q("select id, g, rank() over (partition by g order by i) as r, dense_rank() over (partition by g order by i) as dr from t", False),
    Q("select id, rank() over (order by i desc nulls last) as r from t", False),
    Q("select id, lag(i) over (order by id) as p, lead(i) over (order by id) as n from t", False),
    Q("select id, lag(i, 2, -1) over (partition by g order by id) as p, lead(i, 3, 0) over (partition by g order by id) as n from t", False),
    Q("select id, first_value(i) over (partition by g order by id) as fv, last_value(i) over (partition by g order by id) as lv from t", False),
    Q("select id, last_value(i) over (partition by g order by id rows between unbounded preceding and unbounded following) as lv from t", False),
    Q("select id, ntile(4) over (order by id) as q, ntile(3) over (partition by g order by id) as q3 from t", False),
    Q("select id, sum(i) over (partition by g) as s, count(*) over (partition by g) as c from t", False),
    Q("select id, sum(i) over (partition by g order by id) as running from t", False),
    Q("select id, sum(i) over (order by g) as by_peers, count(*) over (order by g) as cnt from t", False),
    Q("select id, avg(f) over (order by id rows between 2 preceding and 2 following) as ma from t", False),
    Q("select id, sum(i) over (partition by g order by id rows between 1 preceding and current row) as s2 from t", False),
    Q("select id, min(i) over (order by id rows between current row and 3 following) as mn, max(i) over (order by id rows between 3 preceding and 1 preceding) as mx from t", False),
    Q("select id, count(i) over (partition by b order by id rows between unbounded preceding and current row) as c from t", False),
    Q("select id, sum(i) over (order by i range between 100 preceding and 100 following) as s from t", False),
    Q("select id, count(*) over (order by g range between 1 preceding and current row) as c from t", False),
    Q("select id, sum(f) over (partition by g order by i range between unbounded preceding and current row) as s from t", False),
    Q("select id, avg(i) over (partition by g) as a, i - avg(i) over (partition by g) as delta from t", False),
    Q("select g, sum(i) as s, rank() over (order by sum(i) desc) as r from t group by g", False),
    Q("select * from (select id, g, row_number() over (partition by g order by i desc nulls last, id) as rn from t) as x where rn <= 2", False),
    Q("select id, first_value(s) over (order by id rows between 1 following and 2 following) as fv from t", False),
    Q("select id, max(dt) over (partition by g order by id rows between unbounded preceding and 1 preceding) as prev_max from t", False),
    Q("select id, max(dt) over (partition by g) as mx, min(ts) over (partition by b) as mn from t", False),
    Q("select id, max(s) over (partition by g) as mx, min(s) over (partition by g order by id) as mn from t", False),
    Q("select id, max(d) over (partition by g) as mx, min(f) over (partition by g order by id) as mn from t", False),
    Q("select id, row_number() over (order by id) as rn from e", False),
    Q("select g, sum(i) as s, sum(sum(i)) over () as total, sum(i) * 100.0 / sum(sum(i)) over () as pct from t group by g", False),
    Q("select g, count(*) as n, avg(count(*)) over (order by g rows between 1 preceding and current row) as a from t group by g", False),
    Q("select id, percent_rank() over (order by i) as pr, cume_dist() over (partition by g order by i) as cd from t", False),
    Q("select id, lag(s, 1, 'none') over (order by id) as p, lead(dt, 2) over (partition by g order by id) as nd from t", False),
    Q("select id, nth_value(i, 2) over (partition by g order by id) as nv from t", False),
    Q("select id, count(*) over (order by i desc range between 5 preceding and 5 following) as c from t", False),
    Q("select id, count(*) over (order by i nulls first range between 5 preceding and 5 following) as c from t", False),
    Q("select id, count(*) over (order by i range between 5 preceding and 5 following) as c from t", False),
    Q("select id, sum(i) over (order by i range between current row and 20 following) as s from t", False),

    # --- three-valued logic -----------------------------------------------------------------
    Q("select id, b and i > 0 as a, b or i > 0 as o, not b as n from t", False),
    Q("select id from t where not (i > 0)", False),
    Q("select id from t where not (i > 0 and b)", False),
    Q("select id from t where i > 0 or b", False),
    Q("select id from t where (i > 0) is null", False),
    Q("select id, case when not (i > 0) then 'np' when i > 0 then 'p' else 'unknown' end as c from t", False),
    Q("select id, (g = 1) is distinct from (b) as x, g is not distinct from 1 as y from t", False),
    Q("select null = null as a, null and false as b, null or true as c, not null as d, null is null as e", False),
    Q("select id from t where coalesce(b, false) = false and i is not null", False),
    Q("select id, b = true as t1, b <> false as t2, b is true as t3, b is not false as t4 from t", False),
]
# fmt: on



def _with_ids(params: list, prefix: str) -> list:
    """Readable test ids: a number plus the start of the SQL."""
    out = []
    for n, param in enumerate(params):
        query = param.values[0]
        slug = re.sub(r"[^a-z0-9]+", "_", query.sql.lower())[:48].strip("_")
        out.append(pytest.param(query, marks=param.marks, id=f"{prefix}{n:03d}-{slug}"))
    return out


CORPUS = _with_ids([param for param, _ in _CORPUS], "q")
LAKEHOUSE = _with_ids([param for param, lake in _CORPUS if lake], "lake")

# NaN, infinities and -0.0 live in their own table ``n``. DuckDB orders NaN above every number
# and makes NaN = NaN true (as PostgreSQL); our expressions follow IEEE (NaN compares false),
# our sort puts NaN beside the NULLs, and hashing operators see bit patterns. The entries that
# disagree are kept as strict xfails so the differences stay documented and visible.
NAN_IEEE = "NaN: DuckDB treats NaN = NaN and NaN > +inf; our comparisons follow IEEE (all false)"
NAN_SORT = "NaN: our sort places NaN next to the NULLs (Arrow null_placement), DuckDB sorts NaN above +inf"
NAN_MINMAX = "NaN: our min/max skip NaN (Arrow min_max), DuckDB's max returns NaN (its greatest value)"
NEG_ZERO = ("-0.0 = 0.0 in SQL, but our hash aggregate/join key on bit patterns: DISTINCT/GROUP BY keep "
            "both, and a join on a float key misses 0.0 vs -0.0 (while NaN joins NaN)")
NAN_CORPUS = [Q(*args, **kw)[0] for args, kw in [
    (("select id, x from n where x > 0", False), {"xfail": NAN_IEEE}),
    (("select id, x from n where x = x", False), {"xfail": NAN_IEEE}),
    (("select id, x from n where x < 2 or x is null", False), {}),
    (("select id, x from n where x in (0.0, 1.0, -3.0)", False), {}),
    (("select id, x from n where x not in (0.0, 2.5)", False), {}),
    (("select id, x from n where x = 0.0", False), {}),
    (("select id, x from n order by x, id", True), {}),
    (("select id, x from n order by x desc nulls first, id", True), {}),
    (("select id, x from n order by x desc nulls last, id", True), {"xfail": NAN_SORT}),
    (("select id, x from n order by x nulls first, id", True), {"xfail": NAN_SORT}),
    (("select grp, count(x) as c, sum(x) as s, avg(x) as a from n group by grp", False), {}),
    (("select grp, max(x) as mx, min(x) as mn from n group by grp", False), {"xfail": NAN_MINMAX}),
    (("select distinct x from n", False), {"xfail": NEG_ZERO}),
    (("select x, count(*) as c from n group by x", False), {"xfail": NEG_ZERO}),
    (("select count(*) as c from n as a join n as b on a.x = b.x", False), {"xfail": NEG_ZERO}),
    (("select id, x + 1 as a, x * 0 as b, abs(x) as c, -x as d, x / 0 as e from n", False), {}),
    (("select id, cast(x as varchar) as s from n", False), {}),
]]
NAN_CORPUS = _with_ids(NAN_CORPUS, "nan")


@pytest.fixture(scope="module")
def tables():
    return make_tables()


@pytest.fixture(scope="module")
def duck(tables):
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    yield con
    con.close()


@pytest.fixture(scope="module")
def session(tables):
    s = engine.connect()
    for name, table in tables.items():
        s.register(name, table)
    return s


@pytest.fixture(scope="module")
def lake_session(tables, tmp_path_factory):
    """``t`` as a lakehouse table of several files (one append per id range), the rest in memory."""
    warehouse = tmp_path_factory.mktemp("warehouse")
    t = tables["t"]
    table = lakehouse.create_table(str(warehouse / "t"), t.schema)
    for start in range(0, t.num_rows, 60):
        table.append(t.slice(start, 60))
    s = engine.connect(str(warehouse))
    for name, data in tables.items():
        if name != "t":
            s.register(name, data)
    return s


def _check(session, duck, query: Query) -> None:
    ours = session.sql(query.sql).to_arrow()
    theirs = duck.sql(query.sql).to_arrow_table()
    assert_same_result(ours, theirs, ordered=query.ordered, sql=query.sql)


def test_corpus_is_large_enough():
    assert len(CORPUS) + len(NAN_CORPUS) >= 170


@pytest.mark.parametrize("query", CORPUS)
def test_query_matches_duckdb(session, duck, query):
    _check(session, duck, query)


@pytest.mark.parametrize("query", NAN_CORPUS)
def test_nan_query_matches_duckdb(session, duck, query):
    _check(session, duck, query)


@pytest.mark.parametrize("query", LAKEHOUSE)
def test_lakehouse_query_matches_duckdb(lake_session, duck, query):
    _check(lake_session, duck, query)


def test_lakehouse_filter_skips_files(lake_session, duck):
    """A selective filter on the id range opens only the files whose statistics can match."""
    sql = "select id, s from t where id between 125 and 130"
    result = lake_session.sql(sql)
    assert_same_result(result.to_arrow(), duck.sql(sql).to_arrow_table(), ordered=False, sql=sql)
    text = result.explain(analyze=True)
    assert "files=1/5" in text and "skipped=4" in text, text


# --- queries both engines must refuse -------------------------------------------------------

ERRORS = [
    "select id, i * 9223372036854775807 as x from t",
    "select 9223372036854775807 + 1 as x",
    "select abs(-9223372036854775807 - 1) as x",
    "select cast('x' as integer) as a",
    "select cast(s as integer) as a from t",
    "select cast(300 as tinyint) as x",
    "select cast(1e30 as bigint) as x",
    "select cast('2021-02-30' as date) as x",
    "select id from t where i = 'abc'",
    "select id, (select key from k) as x from t",
    pytest.param("select id, (select name from k where k.key = t.g) as nm from t", marks=pytest.mark.xfail(
        strict=True, reason="a correlated scalar subquery returning several rows for one outer row (k has "
                            "key 2 twice) is not detected: one row is picked instead of an error")),
    "select nosuch from t",
    "select id from nosuch",
    "select sum(i) as s from t where sum(i) > 0",
    "select id, count(*) as n from t",
    "select g, i from t group by g",
    "select id from t where s like 'a!' escape '!'",
]


@pytest.mark.parametrize("sql", ERRORS)
def test_both_engines_refuse(session, duck, sql):
    """Errors must be ours (EngineError/LakehouseError with a message), never a raw Python one."""
    with pytest.raises(duckdb.Error):
        duck.sql(sql).to_arrow_table()
    with pytest.raises(lakehouse.errors.LakehouseError):
        session.sql(sql).to_arrow()


# Constructs DuckDB answers and we may not support yet: either the same answer, or a clean refusal.
BEYOND = [
    "select id from t where g = any (select key from k)",
    "select id from t where g > all (select key from k where key is not null)",
    "select id, (select max(key) from k where k.w > t.f) as x from t where id < 20",
    "select id, sum(i) over (order by f range between 10.5 preceding and current row) as s from t",
    "select id, count(*) over (order by dt range between interval 7 day preceding and current row) as c from t",
    "select id, count(*) over (partition by g order by id groups between 1 preceding and current row) as c from t",
    "select median(i) as m from t",
    "select any_value(g) as a from t where id = 5",
    "select datediff('day', dt, date '2022-01-01') as a from t",
    "select date_trunc('decade', dt) as c from t",
    "select g, string_agg(s, ',' order by s, id) as ss from t group by g",
    "select count(distinct (g, b)) as n from t",
]


@pytest.mark.parametrize("sql", BEYOND)
def test_unsupported_is_refused_cleanly(session, duck, sql):
    try:
        ours = session.sql(sql).to_arrow()
    except lakehouse.errors.LakehouseError:
        return
    assert_same_result(ours, duck.sql(sql).to_arrow_table(), ordered=False, sql=sql)


def test_division_by_zero_is_null_as_in_duckdb_legacy_mode(session, tables):
    """Integer ``//`` and ``%`` by zero give NULL here, as DuckDB did before 2.0; DuckDB 2.0 raises
    unless ``error_on_division_by_zero`` is off. ``/`` is float division (+-inf, NaN) in both."""
    sql = "select id, i // 0 as a, i % 0 as b, f // 0 as c, i / 0 as d, f % 0 as e from t"
    con = duckdb.connect()
    con.register("t", tables["t"])
    with pytest.raises(duckdb.Error):
        con.sql(sql).to_arrow_table()
    con.execute("set error_on_division_by_zero = false")
    assert_same_result(session.sql(sql).to_arrow(), con.sql(sql).to_arrow_table(), ordered=False, sql=sql)
