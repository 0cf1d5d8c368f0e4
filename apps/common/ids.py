"""Identifier helpers.

`jan_<snowflake>` ids are 64-bit, time ordered and rendered in decimal:

    | 41 bits: ms since JAN_EPOCH | 10 bits: worker id | 12 bits: sequence |

The worker id comes from configuration so that replicas never collide. Within one millisecond the
sequence counts up; when it overflows the generator waits for the next millisecond. If the wall clock
steps backwards the generator keeps issuing ids from the last millisecond it saw (and waits once the
sequence is spent), so ids stay monotonic per worker.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections.abc import Callable

JAN_EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER_ID = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1

_ALPHABET = string.ascii_letters + string.digits


class SnowflakeGenerator:
    """Thread-safe generator of 64-bit time-ordered ids for one worker."""

    def __init__(self, worker_id: int, *, clock_ms: Callable[[], int] | None = None) -> None:
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise ValueError(f"worker id must be between 0 and {MAX_WORKER_ID}, got {worker_id}")
        self._worker_id = worker_id
        self._clock = clock_ms or _now_ms
        self._lock = threading.Lock()
        self._last_ms = -1
        self._sequence = 0

    @property
    def worker_id(self) -> int:
        return self._worker_id

    def next_int(self) -> int:
        with self._lock:
            now = max(int(self._clock()) - JAN_EPOCH_MS, self._last_ms)
            if now == self._last_ms:
                self._sequence = (self._sequence + 1) & MAX_SEQUENCE
                if self._sequence == 0:
                    now = self._wait_past(self._last_ms)
            else:
                self._sequence = 0
            self._last_ms = now
            return (
                (now << (WORKER_BITS + SEQUENCE_BITS)) | (self._worker_id << SEQUENCE_BITS) | self._sequence
            )

    def next_id(self) -> str:
        return jan_id(self.next_int())

    def _wait_past(self, last_ms: int) -> int:
        while True:
            now = int(self._clock()) - JAN_EPOCH_MS
            if now > last_ms:
                return now
            time.sleep(0.0001)


def snowflake_timestamp_ms(value: int) -> int:
    """Unix time in milliseconds at which a snowflake was issued."""
    return (value >> (WORKER_BITS + SEQUENCE_BITS)) + JAN_EPOCH_MS


def jan_id(value: int) -> str:
    """The public form of a snowflake: `jan_<decimal>`."""
    return f"jan_{value}"


def parse_jan_id(value: str) -> int | None:
    """The integer inside a `jan_<decimal>` id, or None when the text is not one."""
    prefix, _, digits = value.partition("_")
    if prefix != "jan" or not digits.isdigit() or len(digits) > 20:
        return None
    number = int(digits)
    return number if number < (1 << 63) else None


def random_id(prefix: str, length: int = 24) -> str:
    """An opaque, unguessable id such as `conv_…`, `msg_…` or `resp_…`."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
