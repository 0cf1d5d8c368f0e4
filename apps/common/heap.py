"""Keep the garbage collector's full collections off the request path.

A process of ours carries some 160k GC-tracked objects before it serves anything (FastAPI, pydantic
schemas, the MCP SDK, SQLAlchemy, OpenTelemetry). Every full (generation 2) collection walks all of
them: about 100 ms of CPU on this class of machine, landing on whichever request happens to
allocate at that moment. That was the tail of response-api's tool rounds (bench/responses_trace.py).

`freeze_startup_heap()` runs one collection and moves what survives it to the permanent
generation, which collections never scan, so later full collections only walk what requests
created. It acts once per process: the first app to start freezes the import-time heap (the bulk);
a process that builds many apps (the test suite) does not keep freezing, and so leaking, their
per-app objects.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup_heap() -> None:
    """Collect once, then exempt every surviving object from future collections (once per process)."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()
