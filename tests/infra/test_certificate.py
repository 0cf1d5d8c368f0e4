"""The ACM certificate of the public NLBs is issued before the listeners use it, or the config stops.

Under Pulumi's mock engine: with `gateway.hostedZone` the program writes ACM's DNS validation records
into the zone and waits on a `CertificateValidation`, whose ARN is what Kong's and Keycloak's
load balancer Services get (so their atomic releases start only after ACM issued the certificate).
Without a zone or an existing certificate, parsing the stack config fails with the records to create.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from infra import mock_engine, render
from infra.config import ConfigError, parse, stack_file

PROD: dict[str, Any] = yaml.safe_load(stack_file("prod").read_text())["config"]
GATEWAY: dict[str, Any] = PROD["jan-server:gateway"]
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
VALIDATION = "aws:acm/certificateValidation:CertificateValidation"
RECORD = "aws:route53/record:Record"


def _gateway(**changes: Any) -> dict[str, Any]:
    gateway = {key: value for key, value in GATEWAY.items() if key != "hostedZone"}
    return {**PROD, "jan-server:gateway": {**gateway, **changes}}


def test_eks_without_a_zone_or_a_certificate_stops_and_names_the_records() -> None:
    with pytest.raises(ConfigError) as raised:
        parse(_gateway())
    message = str(raised.value)
    assert "jan-server:gateway.hostedZone: is required on eks" in message
    for record in ("_<token>.api.jan.ai", "_<token>.auth.jan.ai"):
        assert record in message
    assert "gateway.certificateArn" in message


def test_the_zone_must_hold_the_domain() -> None:
    with pytest.raises(ConfigError, match=r"'example\.com' is not 'jan\.ai' nor a parent of it"):
        parse(_gateway(hostedZone="example.com"))


def test_an_issued_certificate_needs_no_zone_and_dev_takes_neither() -> None:
    assert parse(_gateway(certificateArn=CERTIFICATE)).gateway.hosted_zone is None
    dev: dict[str, Any] = yaml.safe_load(stack_file("dev").read_text())["config"]
    with pytest.raises(ConfigError, match=r'gateway\.hostedZone: needs cluster\.mode "eks"'):
        parse({**dev, "jan-server:gateway": {"hostedZone": "jan.ai"}})


def test_validation_records_go_to_the_zone_and_the_listeners_wait_for_issuance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dependencies: dict[str, list[str]] = {}
    register = mock_engine._RecordingMonitor.RegisterResource

    def recording(self: mock_engine._RecordingMonitor, request: Any) -> Any:
        response = register(self, request)
        dependencies[response.urn] = list(request.dependencies)
        return response

    monkeypatch.setattr(mock_engine._RecordingMonitor, "RegisterResource", recording)
    name, values, config = render.read_stack("prod")
    records = render.render(name, values, config)
    by_type: dict[str, list[mock_engine.Record]] = {}
    for record in records:
        by_type.setdefault(record.type, []).append(record)

    (certificate,) = by_type["aws:acm/certificate:Certificate"]
    assert certificate.inputs["domainName"] == "api.jan.ai"
    assert certificate.inputs["subjectAlternativeNames"] == ["auth.jan.ai"]
    dns = {record.inputs["name"]: record.inputs for record in by_type[RECORD]}
    assert len(dns) == 2
    for host in ("api.jan.ai", "auth.jan.ai"):
        (entry,) = [value for key, value in dns.items() if key.endswith(f".{host}.")]
        assert entry["type"] == "CNAME" and entry["records"][0].endswith(".acm-validations.aws.")
        assert entry["zoneId"] == mock_engine._zone_id("jan.ai")
    (validation,) = by_type[VALIDATION]
    assert (
        validation.inputs["certificateArn"]
        == f"arn:aws:acm:us-east-1:{mock_engine.ACCOUNT}:{certificate.name}"
    )
    assert sorted(validation.inputs["validationRecordFqdns"]) == sorted(n.rstrip(".") for n in dns)

    # Both NLB listeners take the validated ARN, so they are created after the certificate is issued.
    kong = _one(records, "kubernetes:helm.sh/v3:Release", "kong")
    keycloak_lb = [
        record
        for record in records
        if record.type == "kubernetes:core/v1:Service"
        and (record.inputs.get("spec") or {}).get("type") == "LoadBalancer"
    ]
    assert keycloak_lb, "Keycloak's public NLB Service"
    for listener in (kong, *keycloak_lb):
        assert validation.urn in dependencies[listener.urn], listener.name


def _one(records: list[mock_engine.Record], type_: str, name: str) -> mock_engine.Record:
    (found,) = [record for record in records if record.type == type_ and record.name == name]
    return found
