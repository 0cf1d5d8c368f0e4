"""Run the policy pack's `pulumi_policy` adapters over a render; prints {policy: [violations]} as JSON.

This runs in the pack's own virtualenv (`make policy-venv`), where `pulumi_policy` is installed:
`python -m tests.infra.policy_adapter_check <resources.json> <stack>`.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)


def main(resources_json: str, stack: str) -> None:
    pack = importlib.import_module("policy.__main__")
    records: list[dict[str, Any]] = json.loads(Path(resources_json).read_text())["resources"]
    options = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    providers = {
        f"{r['type']}::{r['name']}": PolicyProviderResource(
            r["type"], r["inputs"], f"urn:pulumi:{stack}::jan-server::{r['type']}::{r['name']}", r["name"]
        )
        for r in records
        if r["type"].startswith("pulumi:providers:")
    }
    found: dict[str, list[str]] = {}
    for policy in pack.policies():
        reported: list[str] = []

        def report(message: str, urn: str | None = None, *, _into: list[str] = reported) -> None:
            _into.append(message)

        if isinstance(policy, ResourceValidationPolicy):
            for record in records:
                urn = f"urn:pulumi:{stack}::jan-server::{record['type']}::{record['name']}"
                provider = providers.get(record.get("provider") or "")
                args = ResourceValidationArgs(
                    record["type"], record["inputs"], urn, record["name"], options, provider
                )
                before = len(reported)
                policy.validate(args, report)
                # The plain rules prefix resource-rule findings with the resource's name.
                if policy.name != "rds-hardened":
                    reported[before:] = [f"{record['name']}: {m}" for m in reported[before:]]
        else:
            resources = [
                PolicyResource(
                    r["type"],
                    r["inputs"],
                    "",
                    r["name"],
                    options,
                    providers.get(r.get("provider") or ""),
                    None,
                    [],
                    {},
                )
                for r in records
            ]
            policy.validate(StackValidationArgs(resources), report)
        if reported:
            found[policy.name] = reported
    json.dump(found, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
