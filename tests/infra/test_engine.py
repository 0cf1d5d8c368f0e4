"""The offline engine's contracts: loud failures, schemas for every supported version, naming."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pulumi_aws as aws
import pytest

from infra import mock_engine
from infra.cluster_config import SUPPORTED_KUBERNETES
from infra.config import Environment
from infra.naming import Naming


def test_an_invoke_without_an_answer_fails_the_render() -> None:
    def program() -> None:
        aws.get_partition()

    with pytest.raises(NotImplementedError, match="no answer for the invoke aws:index/getPartition"):
        mock_engine.run(program, stack="unit", config={}, region="eu-west-1")


def test_a_failed_run_closes_the_loops_of_the_calls_it_left_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pulumi stops waiting at the first failed call, so a failed run can end while a registration is
    still on the engine's executor; that call's event loop must be closed too, or it is collected
    unclosed later (its self-pipe reported as an unclosed Unix socket in some other test)."""
    held_started, engine_stopping = threading.Event(), threading.Event()
    held: list[tuple[asyncio.AbstractEventLoop | None, BaseException | None]] = []
    register: Callable[[Any, Any], Any] = mock_engine._RecordingMonitor.RegisterResource
    answer: Callable[[Any, Any], Any] = mock_engine._Answers.call
    shutdown = asyncio.BaseEventLoop.shutdown_default_executor

    def held_register(self: mock_engine._RecordingMonitor, request: Any) -> Any:
        if request.name != "held":
            return register(self, request)
        held_started.set()
        engine_stopping.wait()  # runs on once the failed run is being wound up
        try:
            response = register(self, request)
        except Exception as exc:
            held.append((None, exc))
            raise
        held.append((asyncio.get_event_loop(), None))  # the loop the call ran its serialisation on
        return response

    def answer_once_held(self: mock_engine._Answers, args: Any) -> Any:
        held_started.wait()  # the registration is in flight before the run fails
        return answer(self, args)

    async def stopping(loop: asyncio.BaseEventLoop) -> None:
        engine_stopping.set()
        await shutdown(loop)

    monkeypatch.setattr(mock_engine._RecordingMonitor, "RegisterResource", held_register)
    monkeypatch.setattr(mock_engine._Answers, "call", answer_once_held)
    monkeypatch.setattr(asyncio.BaseEventLoop, "shutdown_default_executor", stopping)

    def program() -> None:
        aws.s3.Bucket("held")
        aws.get_partition()  # no answer: the run fails

    with pytest.raises(NotImplementedError):
        mock_engine.run(program, stack="unit", config={}, region="eu-west-1")
    ((loop, error),) = held
    assert error is None
    assert loop is not None and loop.is_closed()


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
def test_every_supported_kubernetes_version_has_strict_schemas(version: str) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "jan"}}
    kubernetes_validate.validate(namespace, f"{version}.0", strict=True)


def test_names_tags_and_labels_come_from_one_helper() -> None:
    naming = Naming(Environment.STAGING, "team@example.com")
    assert naming("gpu", "l4") == "jan-staging-gpu-l4"
    assert naming.default_tags == {
        "environment": "staging",
        "project": "jan-server",
        "owner": "team@example.com",
        "managed-by": "pulumi",
    }
    assert naming.tags("vpc") == {"Name": "jan-staging-vpc"}
    assert naming.labels("apps")["app.kubernetes.io/part-of"] == "jan-server"
    assert all("@" not in value for value in naming.labels("apps").values())  # owner is no label value
