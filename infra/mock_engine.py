"""Run the platform program offline under Pulumi's mock engine and record every resource it registers.

Decisions:
- No Pulumi CLI, no provider plugins, no credentials: `pulumi.runtime.set_mocks` replaces the engine.
  The program runs exactly as under `pulumi up` (config is fed through Pulumi's config API and parsed by
  the same `load_from_pulumi()`), only the answers come from here.
- Resource outputs are deterministic stand-ins (`<name>-id`, fake ARNs, endpoints), so two renders of
  the same stack are byte-identical.
- `kubernetes:helm:template` invokes (what `helm.v3.Chart` asks the provider) are answered by rendering
  the chart with helm-python-sdk, so chart objects become real child resources. Any other invoke the
  program starts using must get an answer here: unknown invokes fail the render loudly.
- Each run happens in its own thread with its own event loop: Pulumi keeps its global state in context
  variables (a new thread starts with an empty context) and drives the program with the thread's
  current event loop, so runs in one process (tests, several stacks, an asyncio host) cannot leak into
  each other.
- Secrets (values Pulumi marks secret) are replaced by `[secret]` as they are recorded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import mocks, rpc

from infra.config import PROJECT, REPO_ROOT
from infra.helm_render import Capabilities, render_chart
from infra.instances import INSTANCES, as_aws_answer

SECRET = "[secret]"  # noqa: S105 - the placeholder for redacted values
ACCOUNT = "123456789012"
_AZ_INVOKE = "aws:index/getAvailabilityZones:getAvailabilityZones"
_HELM_INVOKE = "kubernetes:helm:template"
_ZONE_INVOKE = "aws:route53/getZone:getZone"
DEFAULT_KUBE_VERSION = "1.33"
_INSTANCE_TYPE_INVOKE = "aws:ec2/getInstanceType:getInstanceType"
_CALLER_INVOKE = "aws:index/getCallerIdentity:getCallerIdentity"
_SESSION_INVOKE = "aws:iam/getSessionContext:getSessionContext"
_IMAGE_INVOKE = "aws:ecr/getImage:getImage"
# Who runs `pulumi up` offline: the prod stack's admin role, so a collision with adminArns would show.
CALLER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/platform-admin"


@dataclass(frozen=True, slots=True)
class Record:
    """One registered resource, as the render reports it."""

    urn: str
    type: str
    name: str
    parent: str | None
    provider: str | None
    custom: bool
    inputs: dict[str, Any]
    options: dict[str, Any]
    """The resource options a review cares about: `protect`, `ignoreChanges`, `customTimeouts` (when set)."""
    dependencies: tuple[str, ...] = ()
    """URNs this resource waits for: its `depends_on` (components expanded), inputs' sources, provider."""


class _Answers(mocks.Mocks):
    # The registry holds every stack's release tag (a test sets False to see a first `up` without it).
    image_pushed = True

    def __init__(self, region: str, kube_version: str) -> None:
        self.region = region
        self.kube_version = kube_version

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == _AZ_INVOKE:
            return {"names": [f"{self.region}{zone}" for zone in "abc"], "zoneIds": []}, []
        if args.token == _ZONE_INVOKE:
            zone = str(args.args["name"])
            return {"zoneId": _zone_id(zone), "id": _zone_id(zone), "name": zone}, []
        if args.token == _HELM_INVOKE:
            options = json.loads(args.args["jsonOpts"])
            capabilities = Capabilities(
                options.get("kube_version") or self.kube_version,
                frozenset(options.get("api_versions") or ()),
            )
            objects = render_chart(
                options["path"],
                options.get("values") or {},
                options["release_name"],
                options.get("namespace"),
                capabilities,
            )
            return {"result": objects}, []
        if args.token == _INSTANCE_TYPE_INVOKE:
            return as_aws_answer(INSTANCES[args.args["instanceType"]]), []
        if args.token == _CALLER_INVOKE:
            session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{CALLER_ROLE.rsplit('/', 1)[1]}/pulumi"
            return {"accountId": ACCOUNT, "arn": session, "userId": "AROAMOCK:pulumi"}, []
        if args.token == _IMAGE_INVOKE:
            if not self.image_pushed:  # as AWS answers: the invoke fails
                missing = f"image {args.args['imageTag']} not found in {args.args['repositoryName']}"
                return {}, [("imageTag", missing)]
            digest = hashlib.sha256(repr(sorted(args.args.items())).encode()).hexdigest()
            return {
                "registryId": ACCOUNT,
                "imageDigest": f"sha256:{digest}",
                "imageTags": [args.args["imageTag"]],
            }, []
        if args.token == _SESSION_INVOKE:
            return {"arn": args.args["arn"], "issuerArn": CALLER_ROLE, "issuerName": "platform-admin"}, []
        raise NotImplementedError(f"the offline render has no answer for the invoke {args.token}")

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", {
            **args.inputs,
            **_fake_outputs(args.typ, args.name, args.inputs, self.region),
        }


class _RecordingMonitor(mocks.MockMonitor):
    def __init__(self, answers: _Answers) -> None:
        super().__init__(answers)
        self.records: list[Record] = []
        # Pulumi's mock monitor gives each worker thread an event loop and never closes it; the
        # monitor's handlers get one from here instead, so `close_loops` can release them.
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._thread = threading.local()

    def _own_loop(self) -> None:
        if getattr(self._thread, "loop", None) is None:
            self._thread.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._thread.loop)
            self._loops.append(self._thread.loop)

    def close_loops(self) -> None:
        for loop in self._loops:
            loop.close()
        self._loops.clear()

    def Invoke(self, request: Any) -> Any:
        self._own_loop()
        return super().Invoke(request)  # type: ignore[no-untyped-call]

    def ReadResource(self, request: Any) -> Any:
        self._own_loop()
        return super().ReadResource(request)  # type: ignore[no-untyped-call]

    def RegisterResource(self, request: Any) -> Any:
        self._own_loop()
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            inputs = _plain(_with_nulls(request.object, rpc.deserialize_properties(request.object)))
            self.records.append(
                Record(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=_short(request.parent)
                    if "::pulumi:pulumi:Stack::" not in request.parent
                    else None,
                    provider=_short(request.provider.rsplit("::", 1)[0]) if request.provider else None,
                    custom=bool(request.custom),
                    inputs=inputs,
                    options=_options(request),
                    dependencies=_dependencies(request),
                )
            )
        return response


def run(
    program: Callable[[], object],
    *,
    stack: str,
    config: Mapping[str, Any],
    region: str,
    kube_version: str = DEFAULT_KUBE_VERSION,
) -> list[Record]:
    """Run `program` against the mock engine with `config` and return what it registered; charts
    rendered through `helm.v3.Chart` see a cluster of `kube_version`."""
    outcome: list[list[Record]] = []
    failure: list[BaseException] = []

    def in_own_thread() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        monitor = _RecordingMonitor(_Answers(region, kube_version))
        try:
            outcome.append(_run(monitor, program, stack, config))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)
        finally:
            # Pulumi stops waiting at the first failed call, so a failed run can end with monitor calls
            # still queued or running on this loop's executor, each able to take a loop of its own. Only
            # once the executor is shut down (its threads joined) is no call left to take one.
            loop.run_until_complete(loop.shutdown_default_executor())
            monitor.close_loops()
            loop.close()

    worker = threading.Thread(target=in_own_thread, name="pulumi-mock-engine")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


def _run(
    monitor: _RecordingMonitor, program: Callable[[], object], stack: str, config: Mapping[str, Any]
) -> list[Record]:
    pulumi.runtime.set_all_config({key: _config_string(value) for key, value in config.items()})
    mocks.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    # `pulumi.runtime.test` runs a function under the mocks and waits for every registration to finish
    # (when the run succeeds: see `run` for a failed one).
    pulumi.runtime.test(lambda: _discard(program()))()  # type: ignore[no-untyped-call]
    return sorted(monitor.records, key=lambda record: record.urn)


def _options(request: Any) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if request.protect:
        options["protect"] = True
    if request.ignoreChanges:
        options["ignoreChanges"] = sorted(request.ignoreChanges)
    timeouts = request.customTimeouts
    if timeouts.create or timeouts.update or timeouts.delete:
        found = {"create": timeouts.create, "update": timeouts.update, "delete": timeouts.delete}
        options["customTimeouts"] = {key: value for key, value in found.items() if value}
    return options


def _dependencies(request: Any) -> tuple[str, ...]:
    found = set(request.dependencies)
    for dependencies in request.propertyDependencies.values():
        found.update(dependencies.urns)
    if request.provider:
        found.add(request.provider.rsplit("::", 1)[0])
    return tuple(sorted(found))


def _discard(_: object) -> None:
    return None


def _config_string(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"secure"}:
        return SECRET  # encrypted stack values cannot be read offline
    return value if isinstance(value, str) else json.dumps(value)


def _short(urn: str) -> str:
    """`urn:pulumi:stack::project::a$b::name` -> `b::name`."""
    qualified_type, name = urn.split("::")[2:4]
    return f"{qualified_type.split('$')[-1]}::{name}"


def _with_nulls(raw: Any, value: Any) -> Any:
    """`value` with the explicit nulls of the raw protobuf `raw` put back.

    `rpc.deserialize_properties` drops keys whose value is null, but a null in a Helm release's values
    is how the program deletes a chart default: Helm receives it, so the render must too. Secrets and
    other special values deserialise to dicts of the same keys, so one parallel walk covers them.
    """
    kind = getattr(getattr(raw, "DESCRIPTOR", None), "full_name", None)
    if kind == "google.protobuf.Struct" and isinstance(value, dict):
        for key, item in raw.items():
            if item is None:
                value.setdefault(key, None)
            elif key in value:
                value[key] = _with_nulls(item, value[key])
    elif kind == "google.protobuf.ListValue" and isinstance(value, list) and len(raw) == len(value):
        return [_with_nulls(item, element) for item, element in zip(raw, value, strict=True)]
    return value


def _plain(value: Any) -> Any:
    """Inputs as JSON-ready data: secrets hidden, resources by URN, repository paths relative."""
    if rpc.is_rpc_secret(value):
        return _mask(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if not key.startswith("__")}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, pulumi.Resource):
        return "<resource>"
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire protocol has only doubles
    if isinstance(value, str) and value.startswith(f"{REPO_ROOT}/"):
        return value.removeprefix(f"{REPO_ROOT}/")
    return value


def _mask(value: Any) -> Any:
    """Hide every leaf of a secret but keep its shape (a secret map stays a map of the same keys)."""
    if isinstance(value, dict):
        return {key: _mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask(item) for item in value]
    return SECRET


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _zone_id(zone: str) -> str:
    return "Z" + hashlib.sha256(zone.encode()).hexdigest()[:20].upper()


def _fake_outputs(typ: str, name: str, inputs: Mapping[str, Any], region: str) -> dict[str, Any]:
    service = typ.split(":")[1].split("/")[0]
    outputs: dict[str, Any] = {"arn": f"arn:aws:{service}:{region}:{ACCOUNT}:{name}"}
    if typ == "aws:eks/cluster:Cluster":
        outputs |= {
            "endpoint": f"https://{name}.eks.{region}.amazonaws.com",
            "certificateAuthority": {"data": base64.b64encode(b"mock-ca").decode()},
            "vpcConfig": {**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": f"sg-{name}"},
        }
    elif typ == "aws:rds/instance:Instance":
        outputs |= {"address": f"{name}.{region}.rds.amazonaws.com", "port": 5432}
    elif typ == "aws:s3/bucket:Bucket":
        outputs["bucket"] = inputs.get("bucket", name)
    elif typ == "aws:ecr/repository:Repository":
        outputs["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{inputs.get('name', name)}"
    elif typ == "aws:eks/nodeGroup:NodeGroup":
        outputs["nodeGroupName"] = inputs.get("nodeGroupName", name)
        outputs["resources"] = [{"autoscalingGroups": [{"name": f"eks-{name}-asg"}]}]
    elif typ == "aws:acm/certificate:Certificate":
        hosts = [inputs["domainName"], *inputs.get("subjectAlternativeNames", [])]
        outputs["domainValidationOptions"] = [
            {
                "domainName": host,
                "resourceRecordName": f"_{_digest(host)}.{host}.",
                "resourceRecordType": "CNAME",
                "resourceRecordValue": f"_{_digest(name)}.acm-validations.aws.",
            }
            for host in hosts
        ]
    elif typ == "aws:route53/record:Record":
        outputs["fqdn"] = str(inputs.get("name", name)).rstrip(".")
    elif typ == "random:index/randomPassword:RandomPassword":
        outputs["result"] = hashlib.sha256(name.encode()).hexdigest()[:32]
    if "name" not in inputs and not typ.startswith("kubernetes:"):
        outputs["name"] = name
    return outputs
