"""Each component's key inputs, read from what the program registers under the mock engine."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from infra import mock_engine
from infra.components.gpu_pools import GPU_TOLERATION
from infra.components.object_store import ObjectStore, ObjectStoreArgs
from infra.config import Environment
from infra.naming import Naming
from infra.versions import NVIDIA_DEVICE_PLUGIN, POSTGRES_CLIENT_IMAGE
from tests.infra.conftest import Rendered

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
SUBNET = "aws:ec2/subnet:Subnet"


def test_subnets_spread_over_the_configured_azs_with_eks_tags(prod: Rendered, staging: Rendered) -> None:
    for rendered, zones in ((prod, 3), (staging, 2)):
        subnets = rendered.of_type(SUBNET)
        public = [s for s in subnets if "kubernetes.io/role/elb" in s["inputs"]["tags"]]
        private = [s for s in subnets if "kubernetes.io/role/internal-elb" in s["inputs"]["tags"]]
        assert len(public) == len(private) == zones
        for group in (public, private):
            assert len({s["inputs"]["availabilityZone"] for s in group}) == zones
        assert all(
            s["inputs"]["tags"].get(f"kubernetes.io/cluster/jan-{rendered.out.name}-eks") == "shared"
            for s in subnets
        )


def test_nat_per_az_and_flow_logs_only_in_prod(prod: Rendered, staging: Rendered) -> None:
    assert len(prod.of_type("aws:ec2/natGateway:NatGateway")) == 3
    assert len(staging.of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert prod.of_type("aws:ec2/flowLog:FlowLog")[0]["inputs"]["trafficType"] == "ALL"
    assert not staging.of_type("aws:ec2/flowLog:FlowLog")


def test_gpu_node_groups_ami_taint_labels_and_scaling(prod: Rendered, staging: Rendered) -> None:
    l4 = prod.one(NODE_GROUP, "jan-prod-gpu-l4")["inputs"]
    assert l4["amiType"] == "AL2023_x86_64_NVIDIA"
    assert l4["capacityType"] == "ON_DEMAND"
    assert l4["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert l4["labels"] == {
        "jan.ai/gpu": "l4",
        "jan.ai/pool": "l4",
        "jan.ai/ami": "al2023",
        "nvidia.com/gpu.present": "true",
    }
    assert l4["scalingConfig"] == {"minSize": 1, "desiredSize": 2, "maxSize": 6}
    assert l4["diskSize"] == 300 and l4["instanceTypes"] == ["g6.2xlarge"] and l4["version"] == "1.34"
    assert prod.one(NODE_GROUP, "jan-prod-gpu-l4")["options"] == {
        "ignoreChanges": ["scalingConfig.desiredSize"]
    }
    assert prod.one(NODE_GROUP, "jan-prod-gpu-l40s")["inputs"]["amiType"] == "BOTTLEROCKET_x86_64_NVIDIA"
    assert staging.one(NODE_GROUP, "jan-staging-gpu-l4")["inputs"]["capacityType"] == "SPOT"
    system = prod.one(NODE_GROUP, "jan-prod-cluster-system")["inputs"]
    assert "taints" not in system and system["amiType"] == "AL2023_x86_64_STANDARD"


def test_empty_gpu_pools_can_scale_up_from_zero(prod: Rendered) -> None:
    tags = {
        item["name"]: item["inputs"]
        for item in prod.of_type("aws:autoscaling/tag:Tag")
        if item["name"].startswith("jan-prod-gpu-l40s-")
    }
    assert tags["jan-prod-gpu-l40s-taint-nvidia.com-gpu"] == {
        "autoscalingGroupName": "eks-jan-prod-gpu-l40s-asg",
        "tag": {
            "key": "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu",
            "value": "true:NoSchedule",
            "propagateAtLaunch": False,
        },
    }
    assert tags["jan-prod-gpu-l40s-label-jan.ai-pool"]["tag"]["value"] == "l40s"


def test_only_model_servers_and_the_device_plugin_tolerate_the_gpu_taint(prod: Rendered) -> None:
    tolerating = []
    for item in prod.resources:
        pod = (((item["inputs"].get("spec") or {}).get("template") or {}).get("spec")) or {}
        if any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", [])):
            tolerating.append(item["inputs"]["metadata"]["name"])
    assert tolerating == ["vllm-qwen3-32b-awq", "vllm-qwen3-8b"]  # nothing else of ours lands on GPUs
    plugin = prod.one("kubernetes:helm.sh/v3:Release", "nvidia-device-plugin")["inputs"]
    assert plugin["chart"] == NVIDIA_DEVICE_PLUGIN.name and plugin["version"] == NVIDIA_DEVICE_PLUGIN.version
    assert plugin["values"]["tolerations"] == [GPU_TOLERATION]
    # Which nodes it selects is checked against the real chart in test_upstream_platform.py.


def test_rds_safety_settings_per_environment(prod: Rendered, staging: Rendered) -> None:
    expected = {"prod": (True, False, 14), "staging": (False, True, 3)}
    for rendered in (prod, staging):
        stack = rendered.out.name
        db = rendered.one("aws:rds/instance:Instance", f"jan-{stack}-database-postgres")["inputs"]
        protected, skip_snapshot, retention = expected[stack]
        assert db["storageEncrypted"] is True and db["publiclyAccessible"] is False
        assert db["backupRetentionPeriod"] == retention
        assert db["deletionProtection"] is protected and db["multiAz"] is protected
        assert db["skipFinalSnapshot"] is skip_snapshot
        assert ("finalSnapshotIdentifier" in db) is protected
        assert db["password"] == mock_engine.SECRET
        options = rendered.one("aws:rds/instance:Instance", f"jan-{stack}-database-postgres").get(
            "options", {}
        )
        assert options.get("protect", False) is protected
    params = prod.one("aws:rds/parameterGroup:ParameterGroup", "jan-prod-database-params")["inputs"]
    assert {"name": "rds.force_ssl", "value": "1", "applyMethod": "immediate"} in params["parameters"]
    ingress = prod.one("aws:ec2/securityGroup:SecurityGroup", "jan-prod-database-sg")["inputs"]["ingress"]
    assert [rule["securityGroups"] for rule in ingress] == [["sg-jan-prod-cluster-eks"]]


def test_database_bootstrap_gives_each_app_a_dsn_secret(prod: Rendered) -> None:
    secrets = {
        item["inputs"]["metadata"]["name"]: item["inputs"]
        for item in prod.of_type("kubernetes:core/v1:Secret")
    }
    for app in ("llm-api", "response-api", "media-api", "mcp-tools"):
        assert secrets[f"{app}-database"]["stringData"] == {"DATABASE_URL": "[redacted]"}
    (job,) = [job for job in prod.of_type("kubernetes:batch/v1:Job") if "RdsDatabase" in job["parent"]]
    pod = job["inputs"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == POSTGRES_CLIENT_IMAGE
    assert pod["containers"][0]["env"] == [
        {"name": "ROLES", "value": "keycloak llm_api mcp_tools media_api response_api"},
        # RDS exports no Postgres metrics: the exporter's `pg_monitor` login.
        {"name": "MONITORING_ROLES", "value": "postgres_exporter"},
        {"name": "ROLES_DIR", "value": "/run/secrets/roles"},
    ]
    assert pod["containers"][0]["securityContext"]["runAsNonRoot"] is True


def test_bucket_is_private_encrypted_and_versioned_in_prod(prod: Rendered, staging: Rendered) -> None:
    block = prod.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "jan-prod-objects-media")[
        "inputs"
    ]
    assert all(
        block[key] is True
        for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    sse = prod.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "jan-prod-objects-media",
    )
    assert sse["inputs"]["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    assert (
        prod.of_type("aws:s3/bucketVersioning:BucketVersioning")[0]["inputs"]["versioningConfiguration"][
            "status"
        ]
        == "Enabled"
    )
    assert not staging.of_type("aws:s3/bucketVersioning:BucketVersioning")
    rules = prod.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "jan-prod-objects-media"
    )["inputs"]["rules"]
    assert rules[0]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 3}
    cors = prod.one("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration", "jan-prod-objects-media")[
        "inputs"
    ]
    # Browsers PUT to presigned URLs from the web app's origin, not the API's.
    (rule,) = cors["corsRules"]
    assert rule["allowedOrigins"] == ["https://chat.jan.ai"]
    assert "PUT" in rule["allowedMethods"] and "ETag" in rule["exposeHeaders"]
    staging_cors = staging.one(
        "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration", "jan-staging-objects-media"
    )["inputs"]
    assert staging_cors["corsRules"][0]["allowedOrigins"] == ["https://chat.staging.jan.ai"]
    policy = json.loads(
        prod.one("aws:s3/bucketPolicy:BucketPolicy", "jan-prod-objects-media")["inputs"]["policy"]
    )
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert prod.one("aws:s3/bucket:Bucket", "jan-prod-objects-media")["inputs"]["forceDestroy"] is False
    assert prod.one("aws:s3/bucket:Bucket", "jan-prod-objects-media")["options"] == {"protect": True}
    assert "options" not in staging.one("aws:s3/bucket:Bucket", "jan-staging-objects-media")


def test_pod_identity_is_scoped_to_media_api(prod: Rendered) -> None:
    (association,) = [
        found
        for found in prod.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if found["inputs"]["namespace"] == "jan"
    ]
    assert association["inputs"]["serviceAccount"] == "media-api"
    role = prod.one("aws:iam/role:Role", "jan-prod-objects-media-api")
    assert association["inputs"]["roleArn"].endswith(":jan-prod-objects-media-api")
    trust = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    grants = json.loads(
        prod.one("aws:iam/rolePolicy:RolePolicy", "jan-prod-objects-media-api")["inputs"]["policy"]
    )
    assert {resource for statement in grants["Statement"] for resource in [statement["Resource"]]} == {
        "arn:aws:s3:us-east-1:123456789012:jan-prod-objects-media",
        "arn:aws:s3:us-east-1:123456789012:jan-prod-objects-media/*",
    }


def test_cluster_access_addons_and_storage(prod: Rendered) -> None:
    cluster = prod.one("aws:eks/cluster:Cluster", "jan-prod-cluster-eks")["inputs"]
    assert cluster["version"] == "1.34" and cluster["accessConfig"]["authenticationMode"] == "API"
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    kms = json.loads(
        prod.one("aws:iam/rolePolicy:RolePolicy", "jan-prod-cluster-secrets")["inputs"]["policy"]
    )
    assert kms["Statement"][0]["Resource"] == cluster["encryptionConfig"]["provider"]["keyArn"]
    addons = {item["inputs"]["addonName"] for item in prod.of_type("aws:eks/addon:Addon")}
    assert addons == {
        "vpc-cni",
        "coredns",
        "kube-proxy",
        "eks-pod-identity-agent",
        "aws-ebs-csi-driver",
        "metrics-server",
    }
    entry = prod.one("aws:eks/accessEntry:AccessEntry", "jan-prod-cluster-admin-0")["inputs"]
    assert entry["principalArn"] == "arn:aws:iam::123456789012:role/platform-admin"
    (storage,) = prod.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
    assert storage["inputs"]["parameters"]["type"] == "gp3"
    assert storage["inputs"]["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"
    }


def test_every_aws_resource_goes_through_the_tagged_provider(prod: Rendered) -> None:
    (provider,) = prod.of_type("pulumi:providers:aws")
    tags = json.loads(provider["inputs"]["defaultTags"])["tags"]
    assert tags == {
        "environment": "prod",
        "project": "jan-server",
        "owner": "platform-team",
        "managed-by": "pulumi",
    }
    aws_resources = [item for item in prod.resources if item["type"].startswith("aws:")]
    assert aws_resources and {item["provider"] for item in aws_resources} == {
        "pulumi:providers:aws::jan-prod-aws"
    }
    assert all(item["name"].startswith("jan-prod-") for item in aws_resources)


def test_dev_uses_the_existing_cluster_and_no_cloud(rendered: dict[str, Rendered]) -> None:
    dev = rendered["dev"]
    (provider,) = dev.of_type("pulumi:providers:kubernetes")
    assert provider["inputs"] == {"context": "kind-jan"}
    assert not [item for item in dev.resources if item["type"].startswith("aws:")]
    namespace = dev.one("kubernetes:core/v1:Namespace", "jan-dev-cluster-apps")["inputs"]["metadata"]
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_a_component_builds_alone() -> None:
    def program() -> None:
        ObjectStore(
            "store",
            ObjectStoreArgs(
                naming=Naming(Environment.STAGING, "me"),
                production=False,
                abandoned_upload_days=2,
                cors_origins=(),
                cluster_name="c",
                namespace="apps",
                service_account="media-api",
                region="eu-west-1",
            ),
        )
        pulumi.export("done", True)

    records = mock_engine.run(program, stack="unit", config={}, region="eu-west-1")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_type.setdefault(record.type, []).append(record.inputs)
        if record.type != "jan:platform:ObjectStore":
            assert record.parent == "jan:platform:ObjectStore::store"
    assert "aws:s3/bucketVersioning:BucketVersioning" not in by_type
    # No web app origin, no browser uploads: the bucket gets no CORS rule at all.
    assert "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration" not in by_type
    assert by_type["aws:eks/podIdentityAssociation:PodIdentityAssociation"][0]["namespace"] == "apps"
    assert by_type["aws:s3/bucket:Bucket"][0]["forceDestroy"] is True
