"""Entry point for `pulumi up` / `pulumi preview` (Pulumi.yaml: `main: infra/`)."""

from infra.program import main

main()
