"""The startup heap is frozen once and young collections are spaced out (apps/common/heap.py).

Each check runs in a fresh interpreter: the freeze acts once per process, and this one's collector
belongs to the whole test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from apps.common.heap import YOUNG_GENERATION_THRESHOLD

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json
from apps.common.heap import freeze_startup_heap
before = gc.get_threshold()
freeze_startup_heap()
frozen = gc.get_freeze_count()
freeze_startup_heap()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": frozen,
                  "frozen_again": gc.get_freeze_count()}))
"""


def probe() -> dict[str, list[int] | int]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd=REPO
    )
    result: dict[str, list[int] | int] = json.loads(completed.stdout)
    return result


def test_the_startup_heap_is_frozen_once_and_young_collections_are_spaced_out() -> None:
    result = probe()
    before, after = result["before"], result["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert after == [YOUNG_GENERATION_THRESHOLD, *before[1:]]  # the older generations keep their pace
    assert isinstance(result["frozen"], int) and result["frozen"] > 1000  # the import-time heap
    assert result["frozen_again"] == result["frozen"]  # a second app in the process freezes nothing more
