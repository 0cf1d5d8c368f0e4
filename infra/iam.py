"""IAM policy documents as plain JSON (no `get_policy_document` invokes, so the render needs no answers)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"


def trust(service: str) -> str:
    """A role trust policy for an AWS service; EKS Pod Identity also needs `sts:TagSession`."""
    actions: str | list[str] = "sts:AssumeRole"
    if service == POD_IDENTITY_SERVICE:
        actions = ["sts:AssumeRole", "sts:TagSession"]
    return document([{"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}])


def document(statements: Sequence[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def managed(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"
