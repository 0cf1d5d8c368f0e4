"""The services' config keys (gateway, identity, inference models): each invalid value names its key."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from infra.config import ConfigError, load_stack_file, parse, stack_file

VALID: dict[str, Any] = yaml.safe_load(stack_file("prod").read_text())["config"]
INFERENCE = VALID["jan-server:inference"]
MODEL = INFERENCE["models"][0]


def _with(**changes: Any) -> dict[str, Any]:
    return {**VALID, **{f"jan-server:{key}": value for key, value in changes.items()}}


INVALID = [
    (
        _with(inference={**INFERENCE, "models": [{**MODEL, "pool": "a100"}]}),
        "jan-server:inference.models[0].pool: no gpuPools entry named 'a100'",
    ),
    (
        _with(inference={**INFERENCE, "models": []}),
        "jan-server:inference.models: gpu needs at least one model",
    ),
    (
        _with(inference={**INFERENCE, "models": [MODEL, MODEL]}),
        "jan-server:inference.models[1].model: duplicate model 'Qwen/Qwen3-8B'",
    ),
    (
        _with(inference={**INFERENCE, "models": [{**MODEL, "gpus": 9}]}),
        "jan-server:inference.models[0].gpus: Input should be less than or equal to 8",
    ),
    (
        _with(inference={**INFERENCE, "models": [{**MODEL, "model": "not a repo"}]}),
        "jan-server:inference.models[0].model: String should match pattern",
    ),
    (
        _with(inference={**INFERENCE, "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}),
        "jan-server:inference.autoscaling.minReplicas: cannot exceed maxReplicas",
    ),
    (
        _with(
            inference={
                **INFERENCE,
                "externalUpstream": {"baseUrl": "https://api.example.com/v1", "apiKeySecret": "upstream"},
            }
        ),
        "jan-server:inference.externalUpstream: applies only when accelerator is cpu",
    ),
    (
        _with(gateway={"corsOrigins": ["*"]}),
        "jan-server:gateway.corsOrigins: '*' must be scheme://host[:port]",
    ),
    (
        _with(gateway={"corsOrigins": ["https://chat.jan.ai/path"]}),
        "jan-server:gateway.corsOrigins: 'https://chat.jan.ai/path' must be scheme://host[:port]",
    ),
    (_with(gateway={"certificateArn": "arn:aws:s3:::bucket"}), "jan-server:gateway.certificateArn: String"),
    (
        _with(gateway={"replicas": 0}),
        "jan-server:gateway.replicas: Input should be greater than or equal to 1",
    ),
    (
        _with(identity={"sessionIdleSeconds": 90000, "sessionMaxSeconds": 3600}),
        "jan-server:identity.sessionIdleSeconds: cannot exceed sessionMaxSeconds",
    ),
    (
        _with(identity={"redirectUris": ["*"]}),
        "jan-server:identity.redirectUris: '*' must be an absolute http(s) URL",
    ),
    (
        _with(identity={"publicUrl": "https://auth.jan.ai/"}),
        "jan-server:identity.publicUrl: String should match pattern",
    ),
    (_with(identity={"accessTokenSeconds": 10}), "jan-server:identity.accessTokenSeconds: Input should be"),
    (_with(identity={"realm": "jan"}), "jan-server:identity.realm: unknown key"),
]


@pytest.mark.parametrize(("values", "message"), INVALID, ids=[m.split(":")[1] for _, m in INVALID])
def test_invalid_service_config_names_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as failure:
        parse(values)
    assert message in str(failure.value)


def test_cpu_stacks_take_no_models_but_may_name_an_external_upstream() -> None:
    dev: dict[str, Any] = yaml.safe_load(stack_file("dev").read_text())["config"]
    cpu = dev["jan-server:inference"]
    with pytest.raises(ConfigError, match=r"inference.models: applies only when accelerator is gpu"):
        parse({**dev, "jan-server:inference": {**cpu, "models": [MODEL]}})
    upstream = {"baseUrl": "https://api.example.com/v1", "apiKeySecret": "upstream-key"}
    config = parse({**dev, "jan-server:inference": {**cpu, "externalUpstream": upstream}})
    assert config.inference.external_upstream is not None


def test_identity_url_defaults_to_the_auth_host_of_the_domain() -> None:
    assert load_stack_file(stack_file("prod")).identity_url == "https://auth.jan.ai"
    assert load_stack_file(stack_file("dev")).identity_url == "http://auth.jan.localtest.me:8180"
