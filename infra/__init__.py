"""The platform program: one Pulumi project that provisions the platform and deploys the four apps."""
