"""The whole-render invariants (`infra.invariants`) over the dev, staging and prod renders.

Every (check, stack) case holds with no exception: the issue 13 defects the checks found are fixed,
the last being the vLLM and GPU dashboards and alerts the dev stack shipped without running either
(each now ships with the component that exports its metrics, `infra.specs.monitoring`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from infra.invariants import Finding, RenderView, monitoring, pod_security, values_keys, workloads
from tests.infra.conftest import STACKS, Rendered

CHECKS: dict[str, Callable[[RenderView], list[Finding]]] = {
    "service-ports": workloads.service_ports,
    "probe-ports": workloads.probe_ports,
    "references": workloads.references,
    "pod-security": pod_security.pod_security,
    "monitors": monitoring.monitors_select_targets,
    "metrics": monitoring.queries_name_exported_metrics,
    "autoscaling": monitoring.autoscalers_have_metrics,
    "values-keys": values_keys.unread_values,
}


@pytest.fixture(scope="session")
def findings(rendered: dict[str, Rendered]) -> Callable[[str, str], list[Finding]]:
    cache: dict[tuple[str, str], list[Finding]] = {}

    def of(stack: str, check: str) -> list[Finding]:
        if (stack, check) not in cache:
            cache[(stack, check)] = CHECKS[check](rendered[stack].view)
        return cache[(stack, check)]

    return of


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("check", CHECKS)
def test_invariant_holds(check: str, stack: str, findings: Callable[[str, str], list[Finding]]) -> None:
    found = findings(stack, check)
    assert not found, "\n".join(str(f) for f in found)


@pytest.mark.parametrize("stack", STACKS)
def test_alert_rules_pass_promtool(stack: str, rendered: dict[str, Rendered]) -> None:
    if shutil.which("promtool") is None:
        reason = "promtool is not installed (Debian package `prometheus`; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    problems = monitoring.promtool_check_rules(rendered[stack].view)
    assert not problems, "\n".join(str(f) for f in problems)
    assert rendered[stack].view.of_kind("PrometheusRule"), "the render has alert rules to check"
