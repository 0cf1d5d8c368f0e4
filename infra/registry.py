"""The apps' image registry: an ECR repository per AWS stack, a Pulumi project of its own.

The platform's app releases pull `<registry>/jan-<environment>-server:<release.imageTag>`. If the
platform created that repository itself, a first `pulumi up` on an empty account would install the
releases against an empty repository: the migration hook cannot pull, the atomic install times out and
rolls back. So bring-up has three steps, each of which works on an empty account:
1. `pulumi up` of this project (`registry/`, same stack name and stack file): the repository;
2. the image workflow pushes the version tag to it (`.github/workflows/ci.yml`);
3. `pulumi up` of the platform, which first checks that the tag exists (`require_image`) and stops with
   a message naming the missing image instead of waiting for a Helm timeout.
The repository keeps scan-on-push and immutable tags (a version tag, once pushed, always names the same
image); deleting the platform stack never deletes the images.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.config import ConfigError, Environment, StackConfig, load_from_pulumi
from infra.naming import Naming

ECR_REPOSITORY = "server"  # `jan-<environment>-server`


def repository_name(naming: Naming) -> str:
    return naming(ECR_REPOSITORY)


def repository_url(account: str, region: str, naming: Naming) -> str:
    return f"{account}.dkr.ecr.{region}.amazonaws.com/{repository_name(naming)}"


def repository(config: StackConfig, naming: Naming, opts: pulumi.ResourceOptions) -> aws.ecr.Repository:
    return aws.ecr.Repository(
        naming("images"),
        name=repository_name(naming),
        image_tag_mutability="IMMUTABLE",
        image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
        encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")],
        force_delete=config.environment is not Environment.PROD,
        tags=naming.tags("images"),
        opts=opts,
    )


def require_image(config: StackConfig, naming: Naming, opts: pulumi.InvokeOptions) -> str:
    """The image repository URL once `release.imageTag` is in it; otherwise stop with what to do."""
    name, tag = repository_name(naming), config.release.image_tag
    try:
        found = aws.ecr.get_image(repository_name=name, image_tag=tag, opts=opts)
    except Exception as exc:  # an invoke fails with a plain Exception carrying the provider's error
        raise pulumi.RunError(
            f"the image {name}:{tag} is not in the stack's registry ({exc}); bring the registry up "
            f"(`pulumi up -C registry -s <stack> --config-file ...`), push {tag} to it (the image "
            "workflow), then run `pulumi up` again"
        ) from None
    return repository_url(str(found.registry_id), config.region or "", naming)


def main() -> None:
    """The registry project's program (`registry/__main__.py`)."""
    config = load_from_pulumi()
    if not config.on_aws:
        raise ConfigError("the registry project serves AWS stacks (cluster.mode eks) only")
    naming = Naming(config.environment, config.owner)
    provider = aws.Provider(
        naming("registry-aws"),
        region=config.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=naming.default_tags),
    )
    created = repository(config, naming, pulumi.ResourceOptions(provider=provider))
    pulumi.export("repositoryUrl", created.repository_url)
