"""response-api test wiring: the model name, the internal token shared with llm-api, its peers."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from pydantic import SecretStr

from apps.common.settings import AuthSettings
from tests.harness.issuer import TestIssuer

TOOL_TIMEOUT = 2.0
MAX_DEPTH = 3
MODEL = "fake/fake-model"
INTERNAL_TOKEN = "response-api-tests-internal-token"


def auth_settings(issuer: TestIssuer) -> AuthSettings:
    """The issuer's settings plus the internal token llm-api and response-api share."""
    return issuer.auth_settings(internal_token=SecretStr(INTERNAL_TOKEN))


@dataclass(frozen=True)
class Peers:
    llm_api_url: str
    mcp_tools_url: str
    # The Authorization headers llm-api received, oldest first.
    llm_api_authorizations: Callable[[], list[str]]
    # The method and path of every request llm-api received, oldest first.
    llm_api_requests: Callable[[], list[str]]


ServerFactory = Callable[..., AbstractContextManager[str]]
