"""The optimizer: a tuple of rules, each a function plan -> plan, applied in order.

After every rule the root's output fields must be unchanged (same ids, names and types):
a rule that changes what the query returns is a bug, caught here rather than as a wrong
answer.
"""

from __future__ import annotations

from typing import Callable

from engine.errors import PlanError
from engine.logical.plan import Plan

from engine.optimizer.join_order import join_order
from engine.optimizer.limits import limits
from engine.optimizer.prune import prune
from engine.optimizer.pushdown import pushdown
from engine.optimizer.simplify import simplify

Rule = Callable[[Plan], Plan]
RULES: tuple[tuple[str, Rule], ...] = (
    ("simplify", simplify),
    ("pushdown", pushdown),
    ("join_order", join_order),
    ("simplify_after_join_order", simplify),
    ("limits", limits),
    ("prune", prune),
)


def _check_schema(rule: str, before: Plan, after: Plan) -> None:
    old = [(f.id, f.name, str(f.type)) for f in before.fields]
    new = [(f.id, f.name, str(f.type)) for f in after.fields]
    if old != new:
        raise PlanError(f"internal: optimizer rule '{rule}' changed the query's output columns")


def optimize(plan: Plan, rules: tuple[tuple[str, Rule], ...] | None = None) -> Plan:
    for name, rule in (RULES if rules is None else rules):
        new = rule(plan)
        _check_schema(name, plan, new)
        plan = new
    return plan
