"""One naming helper: every resource name, AWS tag and Kubernetes label comes from here.

Names are `jan-<environment>-<parts>` so two stacks in one account never collide and a name says which
stack owns it. AWS resources are tagged through the AWS provider's `default_tags` (every resource the
provider creates gets them, including ones a later component adds), and `tags()` adds the `Name` tag
the console shows. Pulumi still appends a random suffix to physical names it generates, which keeps
replacements (create-before-delete) possible.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import PROJECT, Environment


@dataclass(frozen=True, slots=True)
class Naming:
    environment: Environment
    owner: str

    @property
    def prefix(self) -> str:
        return f"jan-{self.environment.value}"

    def __call__(self, *parts: str) -> str:
        return "-".join((self.prefix, *parts))

    @property
    def default_tags(self) -> dict[str, str]:
        """The tags every AWS resource carries (set once, on the AWS provider)."""
        return {
            "environment": self.environment.value,
            "project": PROJECT,
            "owner": self.owner,
            "managed-by": "pulumi",
        }

    def tags(self, *parts: str, **extra: str) -> dict[str, str]:
        """Per-resource tags on top of the defaults: the `Name` tag and any extras."""
        return {"Name": self(*parts), **extra}

    def labels(self, component: str) -> dict[str, str]:
        """Labels for the Kubernetes objects the program creates itself."""
        return {
            "app.kubernetes.io/part-of": PROJECT,
            "app.kubernetes.io/managed-by": "pulumi",
            "app.kubernetes.io/component": component,
            "jan.ai/environment": self.environment.value,
        }
