"""The policy pack: `policy/rules.py` adapted to Pulumi's policy engine.

Pulumi runs this file with the python3 on PATH, where requirements.txt is installed apart from the
program's .venv: `pulumi_policy` pins a protobuf the apps' environment cannot share, so only this
adapter imports it and the rules stay plain functions.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

# Pulumi runs the pack from its own directory; the rules are imported as part of the repository.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policy import rules

ResourceRule = Callable[[str, Mapping[str, Any]], list[str]]
ReportViolation = Callable[..., None]


def _resource_policy(name: str, rule: ResourceRule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for problem in rule(args.resource_type, args.props):
            report_violation(problem)

    return ResourceValidationPolicy(
        name=name,
        description=(rule.__doc__ or name).strip(),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def _stack_of(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<type>::<name>; the stack may be qualified as org/project/stack.
    return urn.split(":")[2].split("/")[-1] if urn.count(":") >= 3 else ""


def _rds_policy() -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for problem in rules.rds_hardened(args.resource_type, args.props, _stack_of(args.urn)):
            report_violation(problem)

    return ResourceValidationPolicy(
        name="rds-hardened",
        description=(rules.rds_hardened.__doc__ or "").strip(),
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def _stack_policy(name: str, rule: Callable[[list[rules.Resource]], list[str]]) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [
            rules.Resource(
                type=r.resource_type,
                name=r.name,
                props=r.props,
                provider_type=r.provider.resource_type if r.provider else None,
                provider_props=r.provider.props if r.provider else None,
            )
            for r in args.resources
        ]
        for problem in rule(resources):
            report_violation(problem)

    return StackValidationPolicy(
        name=name,
        description=(rule.__doc__ or name).strip().splitlines()[0],
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [
        _resource_policy("no-floating-image-tags", rules.no_floating_image_tags),
        _resource_policy("gpu-node-groups-tainted", rules.gpu_node_groups_tainted),
        _resource_policy("load-balancers-annotated", rules.load_balancers_annotated),
        _resource_policy("secrets-not-in-plain-config", rules.secrets_not_in_plain_config),
        _rds_policy(),
        _stack_policy("aws-resources-tagged", rules.aws_resources_tagged),
        _stack_policy("buckets-private-and-encrypted", rules.buckets_private_and_encrypted),
    ]


if __name__ == "__main__":
    PolicyPack(name="jan-server", enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
