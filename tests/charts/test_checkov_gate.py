"""The reviewed checkov exceptions file and the gate's verdicts (the scan itself runs in `make checkov`)."""

from __future__ import annotations

import re

import pytest

from tests.charts.checkov_gate import Failure, Waiver, failures_from_report, judge, load_exceptions


def test_exceptions_file_lists_each_check_once_with_a_reason():
    waivers = load_exceptions()
    checks = [w.check for w in waivers]
    assert len(checks) == len(set(checks))
    for waiver in waivers:
        assert re.fullmatch(r"CKV2?_K8S_\d+", waiver.check)
        assert waiver.resources and all("." in pattern for pattern in waiver.resources)
        assert len(waiver.reason.split()) >= 20, waiver.check
        # No blanket waiver: every pattern names at least a kind.
        assert all(not pattern.startswith("*") for pattern in waiver.resources)


def test_judge_reports_unexplained_failures_and_stale_exceptions():
    waivers = [Waiver("CKV_K8S_43", ("Deployment.jan.*",), "pinned tags, digest optional")]
    covered = Failure("CKV_K8S_43", "Deployment.jan.llm-api", "/a.yaml")
    other_kind = Failure("CKV_K8S_43", "Job.jan.llm-api-migrate", "/a.yaml")
    other_check = Failure("CKV_K8S_22", "Deployment.jan.llm-api", "/a.yaml")
    assert judge([covered], waivers) == ([], [])
    assert judge([covered, other_kind, other_check], waivers) == ([other_kind, other_check], [])
    assert judge([], waivers) == ([], waivers)


@pytest.mark.parametrize("wrap", [lambda r: r, lambda r: [r]])
def test_failures_are_read_from_checkov_json(wrap):
    report = {
        "check_type": "kubernetes",
        "results": {
            "failed_checks": [
                {"check_id": "CKV_K8S_15", "resource": "Deployment.x.y", "file_path": "/f.yaml"}
            ]
        },
    }
    assert failures_from_report(wrap(report)) == [Failure("CKV_K8S_15", "Deployment.x.y", "/f.yaml")]
    assert failures_from_report({"check_type": "kubernetes", "results": {}}) == []
