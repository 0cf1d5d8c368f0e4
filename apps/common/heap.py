"""Keep the garbage collector off the request path.

A process of ours carries some 160k GC-tracked objects before it serves anything (FastAPI, pydantic
schemas, the MCP SDK, SQLAlchemy, OpenTelemetry). Every full (generation 2) collection walks all of
them: about 100 ms of CPU on this class of machine, landing on whichever request happens to
allocate at that moment. That was the tail of response-api's tool rounds (bench/responses_trace.py).

`freeze_startup_heap()` runs one collection and moves what survives it to the permanent
generation, which collections never scan, so later full collections only walk what requests
created. It acts once per process: the first app to start freezes the import-time heap (the bulk);
a process that builds many apps (the test suite) does not keep freezing, and so leaking, their
per-app objects.

It also raises the youngest generation's threshold. Requests in flight hold thousands of
container objects that die by reference count, never in a cycle, yet at the default of 700 net
allocations they kept triggering young collections that found next to nothing: under 64 concurrent
chat completions llm-api ran ~290 young and ~29 older collections a second, 6-7% of its CPU
(bench/closed_loop.py). At 10,000 the same load ran about one young collection a second; garbage
without cycles is still freed the moment it is dropped.
"""

from __future__ import annotations

import gc

YOUNG_GENERATION_THRESHOLD = 10_000

_frozen = False


def freeze_startup_heap() -> None:
    """Collect once, exempt every surviving object from future collections, and collect the young
    generation less often (once per process)."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
