"""The dependency graph of one stack's run under the mock engine: what waits for what on `pulumi up`.

Edges are what Pulumi orders by: a resource's `depends_on` (components expanded to their resources),
the resources its inputs come from, and its provider; an object a Helm release renders waits for the
release. `waits_for(a)` is everything `a` waits for, directly or transitively.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from infra import mock_engine, render

RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ADDON = "aws:eks/addon:Addon"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
POOL_LABEL = "jan.ai/pool"
GPU_LABEL = "nvidia.com/gpu.present"


@dataclass
class Graph:
    records: list[mock_engine.Record]
    by_urn: dict[str, mock_engine.Record] = field(init=False)
    _closure: dict[str, frozenset[str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.by_urn = {record.urn: record for record in self.records}

    def edges(self, record: mock_engine.Record) -> set[str]:
        found = set(record.dependencies)
        if "$expanded::" in record.urn:
            found.add(record.urn.split("$expanded::", 1)[0])
        return found

    def waits_for(self, record: mock_engine.Record) -> frozenset[str]:
        if record.urn in self._closure:
            return self._closure[record.urn]
        seen: set[str] = set()
        todo = list(self.edges(record))
        while todo:
            urn = todo.pop()
            if urn in seen:
                continue
            seen.add(urn)
            if urn in self.by_urn:
                todo += self.edges(self.by_urn[urn])
        self._closure[record.urn] = frozenset(seen)
        return self._closure[record.urn]

    def of_type(self, type_: str) -> list[mock_engine.Record]:
        return [record for record in self.records if record.type == type_]

    def node_groups(self) -> dict[str, mock_engine.Record]:
        """Node groups by pool (`jan.ai/pool`: `system` or a GPU pool's name)."""
        return {record.inputs["labels"][POOL_LABEL]: record for record in self.of_type(NODE_GROUP)}

    def addon(self, name: str) -> mock_engine.Record | None:
        found = [record for record in self.of_type(ADDON) if record.inputs["addonName"] == name]
        return found[0] if found else None

    def releases(self) -> list[mock_engine.Record]:
        return self.of_type(RELEASE)

    def workloads(self) -> Iterator[mock_engine.Record]:
        """Helm releases and the workload objects (ours, and those our releases render)."""
        for record in self.records:
            if record.type == RELEASE or (
                record.custom
                and record.type.startswith("kubernetes:")
                and record.type.rsplit(":", 1)[1] in WORKLOAD_KINDS
            ):
                yield record

    def pools_of(self, record: mock_engine.Record) -> set[str]:
        """The pools a workload schedules onto, from its node selectors (none: the system pool)."""
        gpu_pools = {name for name in self.node_groups() if name != "system"}
        found: set[str] = set()
        for selector in _node_selectors(record.inputs):
            if POOL_LABEL in selector:
                found.add(str(selector[POOL_LABEL]))
            elif GPU_LABEL in selector:
                found |= gpu_pools
        return found or {"system"}


def _node_selectors(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "nodeSelector" and isinstance(item, dict):
                yield item
            else:
                yield from _node_selectors(item)
    elif isinstance(value, list):
        for item in value:
            yield from _node_selectors(item)


def graph_of(stack: str) -> Graph:
    name, values, config = render.read_stack(stack)
    return Graph(render.render(name, values, config))
