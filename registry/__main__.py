"""Entry point of the registry project: `pulumi up -C registry -s <stack> --config-file <stack file>`."""

from infra.registry import main

main()
