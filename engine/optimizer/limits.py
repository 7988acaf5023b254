"""Limits: ORDER BY + LIMIT becomes a top-N; a bare LIMIT over a scan stops the scan early."""

from __future__ import annotations

from dataclasses import replace

from engine.logical.plan import Limit, Plan, Project, Scan, Sort, TopN, transform_plan


def limits(plan: Plan) -> Plan:
    def rule(node: Plan) -> Plan:
        if not isinstance(node, Limit) or node.count is None:
            return node
        child = node.input
        if isinstance(child, Sort):
            return TopN(child.input, child.keys, node.count, node.offset)
        target = child.input if isinstance(child, Project) else child
        if isinstance(target, Scan) and not target.filters:
            wanted = node.count + node.offset
            limited = replace(target, limit=wanted if target.limit is None else min(wanted, target.limit))
            return replace(node, input=replace(child, input=limited) if isinstance(child, Project) else limited)
        return node

    return transform_plan(plan, rule)
