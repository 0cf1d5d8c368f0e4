"""The policy pack's rules run over an offline render (resources.json), as the engine would run them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from policy import rules

RESOURCE_RULES: dict[str, Callable[[str, Mapping[str, Any]], list[str]]] = {
    "no-floating-image-tags": rules.no_floating_image_tags,
    "gpu-node-groups-tainted": rules.gpu_node_groups_tainted,
    "load-balancers-annotated": rules.load_balancers_annotated,
    "secrets-not-in-plain-config": rules.secrets_not_in_plain_config,
}
STACK_RULES: dict[str, Callable[[Sequence[rules.Resource]], list[str]]] = {
    "aws-resources-tagged": rules.aws_resources_tagged,
    "buckets-private-and-encrypted": rules.buckets_private_and_encrypted,
}


def as_resources(records: Sequence[Mapping[str, Any]]) -> list[rules.Resource]:
    """Render records as the engine hands them to a stack policy (provider inputs attached)."""
    providers = {f"{r['type']}::{r['name']}": r for r in records if r["type"].startswith("pulumi:providers:")}
    resources = []
    for record in records:
        provider = providers.get(record.get("provider") or "")
        resources.append(
            rules.Resource(
                type=record["type"],
                name=record["name"],
                props=record["inputs"],
                provider_type=provider["type"] if provider else None,
                provider_props=provider["inputs"] if provider else None,
            )
        )
    return resources


def violations(records: Sequence[Mapping[str, Any]], environment: str) -> dict[str, list[str]]:
    """Every rule's violations over a render, by policy name (only policies with violations)."""
    found: dict[str, list[str]] = {}
    for name, rule in RESOURCE_RULES.items():
        for record in records:
            found.setdefault(name, []).extend(
                f"{record['name']}: {problem}" for problem in rule(record["type"], record["inputs"])
            )
    for record in records:
        found.setdefault("rds-hardened", []).extend(
            rules.rds_hardened(record["type"], record["inputs"], environment)
        )
    resources = as_resources(records)
    for name, stack_rule in STACK_RULES.items():
        found[name] = stack_rule(resources)
    return {name: problems for name, problems in found.items() if problems}
