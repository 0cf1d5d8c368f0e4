"""The platform program's layers: a layer built before the phase it needs fails loudly."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest

from infra import program
from infra.config import load_stack_file, stack_file
from infra.foundation import MissingPhase, Platform
from infra.naming import Naming
from infra.services import Services


def _platform(**changes: Any) -> Platform:
    config = load_stack_file(stack_file("prod"))
    platform = Platform(
        config=config,
        naming=Naming(config.environment, config.owner),
        cluster=cast(Any, object()),
        database=cast(Any, object()),
        object_store=cast(Any, object()),
        image_repository="registry.example/jan",
    )
    return replace(platform, **changes)


@pytest.mark.parametrize(
    ("missing", "named"), [("database", "no database"), ("object_store", "no object store")]
)
def test_the_release_refuses_a_platform_without_its_data_phase(missing: str, named: str) -> None:
    services = cast(Services, object())
    with pytest.raises(MissingPhase, match=f"{named} yet: build the data phase"):
        program.with_release(_platform(**{missing: None}), services)


def test_a_platform_with_its_data_phase_hands_both_endpoints_over() -> None:
    platform = _platform()
    assert platform.data() == (platform.database, platform.object_store)
