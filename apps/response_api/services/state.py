"""The response object as it is built, and the stream of OpenAI events that mirrors each change.

`ResponseState` owns the public response body. Every change to it goes through one method here,
which also emits the matching event (`response.output_item.added`, `response.output_text.delta`, …)
with the next `sequence_number`, so a streamed response and a stored one cannot disagree.

The terminal event (`response.completed`, `response.failed`, `response.incomplete`) is the client's
acknowledgement, so `finish` only records the outcome; `deliver_end` sends that event once the
response is stored, and `storage_failed` sends an `error` event instead when it could not be.

Events are encoded as they happen and queued for the one listener (the streaming request) and, for a
streamed background response, for its event log (`services/events.py`), which any replica replays.
With neither (plain requests, background ones that were not streamed) `emit` returns at once:
nothing is encoded and nothing is written per token; text is kept as a list of pieces and joined
once when its item closes.

The terminal event is numbered before the final write (`end_event`), so that it can be stored with
it, and sent once that write has committed (`deliver_end`); if the write fails, its number goes to
the `error` event that replaces it, so the stream has no gap.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from apps.common.ids import random_id
from apps.common.sse import encode_json
from apps.response_api.services.events import EventLog, Frame
from apps.response_api.services.items import output_message
from apps.response_api.services.mcp import ToolOutcome
from apps.response_api.types import (
    CallItem,
    CallKind,
    EndStatus,
    ErrorBody,
    ItemStatus,
    McpCallError,
    McpCallItem,
    McpListedTool,
    McpListToolsItem,
    OutputItem,
    OutputMessage,
    OutputText,
    ResponseBody,
    RunStatus,
    Usage,
)

TERMINAL: frozenset[RunStatus] = frozenset({"completed", "failed", "incomplete", "cancelled"})
_END_EVENTS: dict[RunStatus, str] = {
    "completed": "response.completed",
    "failed": "response.failed",
    "incomplete": "response.incomplete",
}
EventQueue = asyncio.Queue[bytes | None]


class ResponseState:
    def __init__(self, body: ResponseBody, log: EventLog | None = None) -> None:
        self.body = body
        self.output: list[OutputItem] = body["output"]
        self.sequence = 0
        self._queue: EventQueue | None = None
        self._log = log
        self._end: Frame | None = None
        self._pieces: dict[int, list[str]] = {}
        self._usage = [0, 0]

    @property
    def id(self) -> str:
        return self.body["id"]

    @property
    def status(self) -> RunStatus:
        return self.body["status"]

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    # listeners

    def listen(self) -> EventQueue:
        self._queue = asyncio.Queue()
        return self._queue

    def stop_listening(self) -> None:
        self._queue = None

    @property
    def observed(self) -> bool:
        """Whether anyone receives the events: a streaming client, or the event log."""
        return self._queue is not None or self._log is not None

    def _number(self, event_type: str, payload: dict[str, Any]) -> Frame:
        payload["type"] = event_type
        payload["sequence_number"] = number = self.sequence
        self.sequence += 1
        return number, encode_json(payload, event=event_type)

    def emit(self, event_type: str, payload: dict[str, Any]) -> None:
        if not self.observed:
            return
        number, frame = self._number(event_type, payload)
        if self._log is not None:
            self._log.append(number, frame)
        if self._queue is not None:
            self._queue.put_nowait(frame)

    def detach_log(self) -> EventLog | None:
        """The event log, taken out of the path of later events (they go with the final write)."""
        log, self._log = self._log, None
        return log

    def close_stream(self) -> None:
        if self._queue is not None:
            self._queue.put_nowait(None)

    # lifecycle

    def start(self) -> None:
        self.body["status"] = "in_progress"
        self.emit("response.created", {"response": self.body})
        self.emit("response.in_progress", {"response": self.body})

    def add_usage(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self._usage[0] += int(usage.get("prompt_tokens") or 0)
            self._usage[1] += int(usage.get("completion_tokens") or 0)
            self.body["usage"] = usage_body(*self._usage)

    def finish(self, status: EndStatus, *, error: ErrorBody | None = None, reason: str | None = None) -> None:
        self.body["status"] = status
        if error is not None:
            self.body["error"] = error
            self.emit("error", {"code": error["code"], "message": error["message"], "param": None})
        if reason is not None:
            self.body["incomplete_details"] = {"reason": reason}
        if status == "completed":
            self.body["completed_at"] = int(time.time())

    def end_event(self) -> Frame | None:
        """The terminal event, numbered and encoded but not sent (a cancelled response has none)."""
        event = _END_EVENTS.get(self.status)
        if event is not None and self.observed:
            self._end = self._number(event, {"response": self.body})
        return self._end

    def deliver_end(self) -> None:
        """Send the terminal event: the final state is stored."""
        if self._end is not None and self._queue is not None:
            self._queue.put_nowait(self._end[1])

    def storage_failed(self, error: ErrorBody) -> None:
        """The final state could not be stored: the stream ends with this error, not a terminal event."""
        if self._end is not None:
            self.sequence, self._end = self._end[0], None  # the error takes the withdrawn event's number
        self.emit("error", {"code": error["code"], "message": error["message"], "param": None})

    def cancel(self) -> None:
        """Cancelled responses keep what was produced; open items end `incomplete`."""
        for index in list(self._pieces):
            self.close_message(index, status="incomplete")
        for item in self.output:
            if item["type"] in ("message", "function_call", "mcp_call") and item["status"] in _OPEN:
                item["status"] = "incomplete"
        self.body["status"] = "cancelled"

    def fail_open_calls(self, error: McpCallError) -> None:
        """Tool calls cut off by a lost MCP session end `failed` with this error."""
        for index, item in enumerate(self.output):
            if item["type"] == "mcp_call" and item["status"] in _OPEN:
                item.update({"status": "failed", "error": error})
                self.emit("response.mcp_call.failed", {"item_id": item["id"], "output_index": index})
                self.emit("response.output_item.done", {"output_index": index, "item": item})

    # output items

    def open_message(self) -> int:
        index = len(self.output)
        item = output_message("", item_id=random_id("msg"), status="in_progress")
        self.output.append(item)
        self._pieces[index] = []
        self.emit("response.output_item.added", {"output_index": index, "item": {**item, "content": []}})
        self.emit(
            "response.content_part.added",
            {"item_id": item["id"], "output_index": index, "content_index": 0, "part": _part("")},
        )
        return index

    def text_delta(self, index: int, text: str) -> None:
        self._pieces[index].append(text)
        if self.observed:
            item_id = self.output[index]["id"]
            self.emit(
                "response.output_text.delta",
                {
                    "item_id": item_id,
                    "output_index": index,
                    "content_index": 0,
                    "delta": text,
                    "logprobs": [],
                },
            )

    def close_message(self, index: int, *, status: ItemStatus = "completed") -> str:
        text = "".join(self._pieces.pop(index))
        item = self._message(index)
        item["content"][0]["text"] = text
        item["status"] = status
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        self.emit("response.output_text.done", {**where, "text": text, "logprobs": []})
        self.emit("response.content_part.done", {**where, "part": _part(text)})
        self.emit("response.output_item.done", {"output_index": index, "item": item})
        return text

    def list_tools(self, server_label: str, tools: list[McpListedTool]) -> None:
        """The `mcp_list_tools` item: which tools of `server_label` the model is offered."""
        index = len(self.output)
        item_id = random_id("mcpl")
        item: McpListToolsItem = {
            "id": item_id,
            "type": "mcp_list_tools",
            "server_label": server_label,
            "tools": [],
            "error": None,
        }
        self.output.append(item)
        self.emit("response.output_item.added", {"output_index": index, "item": item})
        self.emit("response.mcp_list_tools.in_progress", {"item_id": item_id, "output_index": index})
        item["tools"] = tools
        self.emit("response.mcp_list_tools.completed", {"item_id": item_id, "output_index": index})
        self.emit("response.output_item.done", {"output_index": index, "item": item})

    def open_call(self, kind: CallKind, call_id: str, name: str, server_label: str) -> int:
        """A call item the model is streaming: `function_call`, `mcp_call` or `mcp_approval_request`."""
        index = len(self.output)
        item: CallItem
        if kind == "function_call":
            item = {
                "id": random_id("fc"),
                "type": kind,
                "call_id": call_id,
                "name": name,
                "arguments": "",
                "status": "in_progress",
            }
        elif kind == "mcp_approval_request":
            # OpenAI's shape: the request's id is what the approval answers, and names the call later.
            item = {
                "id": random_id("mcpr"),
                "type": kind,
                "name": name,
                "arguments": "",
                "server_label": server_label,
            }
        else:
            item = {
                "id": random_id("mcp"),
                "type": kind,
                "call_id": call_id,
                "name": name,
                "arguments": "",
                "server_label": server_label,
                "output": None,
                "error": None,
                "status": "in_progress",
            }
        self.output.append(item)
        self.emit("response.output_item.added", {"output_index": index, "item": item})
        return index

    def approved_call(self, request: dict[str, Any]) -> int:
        """The `mcp_call` item of a call an earlier response asked approval for, approved in this one."""
        index = self.open_call(
            "mcp_call", str(request["id"]), str(request["name"]), str(request["server_label"])
        )
        item = self._mcp_call(index)
        item.update(
            {"arguments": str(request.get("arguments") or ""), "approval_request_id": str(request["id"])}
        )
        self.close_arguments(index)
        return index

    def arguments(self, index: int) -> str:
        """The arguments of the call item at `index`, as streamed so far."""
        return self._call(index)["arguments"]

    def arguments_delta(self, index: int, delta: str) -> None:
        item = self._call(index)
        item["arguments"] += delta
        if item["type"] == "mcp_approval_request":
            return  # the request is shown whole, when its arguments are complete
        event = "response.function_call_arguments.delta"
        if item["type"] == "mcp_call":
            event = "response.mcp_call_arguments.delta"
        self.emit(event, {"item_id": item["id"], "output_index": index, "delta": delta})

    def close_arguments(self, index: int) -> None:
        item = self._call(index)
        where = {"item_id": item["id"], "output_index": index, "arguments": item["arguments"]}
        if item["type"] == "function_call":
            item["status"] = "completed"
            self.emit("response.function_call_arguments.done", {**where, "name": item["name"]})
            self.emit("response.output_item.done", {"output_index": index, "item": item})
        elif item["type"] == "mcp_approval_request":
            self.emit("response.output_item.done", {"output_index": index, "item": item})
        else:
            self.emit("response.mcp_call_arguments.done", where)

    def call_started(self, index: int) -> None:
        item = self._mcp_call(index)
        item["status"] = "calling"
        self.emit("response.mcp_call.in_progress", {"item_id": item["id"], "output_index": index})

    def call_progress(self, index: int, progress: float, total: float | None, message: str | None) -> None:
        """A progress notification of the MCP call in flight (`response.mcp_call.progress`, ours)."""
        item = self._mcp_call(index)
        if item["status"] != "calling":
            return  # a late notice: the call has already ended
        self.emit(
            "response.mcp_call.progress",
            {
                "item_id": item["id"],
                "output_index": index,
                "progress": progress,
                "total": total,
                "message": message,
            },
        )

    def call_finished(self, index: int, outcome: ToolOutcome) -> None:
        item = self._mcp_call(index)
        status: ItemStatus = "completed" if outcome.ok else "failed"
        item.update({"output": outcome.output, "error": outcome.error, "status": status})
        event = "response.mcp_call.completed" if outcome.ok else "response.mcp_call.failed"
        self.emit(event, {"item_id": item["id"], "output_index": index})
        self.emit("response.output_item.done", {"output_index": index, "item": item})

    def call_skipped(self, index: int) -> None:
        item = self._mcp_call(index)
        item["status"] = "incomplete"
        self.emit("response.output_item.done", {"output_index": index, "item": item})

    # The item at an index, of the kind the caller created there.

    def _message(self, index: int) -> OutputMessage:
        item = self.output[index]
        assert item["type"] == "message", item["type"]
        return item

    def _call(self, index: int) -> CallItem:
        item = self.output[index]
        assert item["type"] in ("function_call", "mcp_call", "mcp_approval_request"), item["type"]
        return item

    def _mcp_call(self, index: int) -> McpCallItem:
        item = self.output[index]
        assert item["type"] == "mcp_call", item["type"]
        return item


_OPEN: tuple[ItemStatus, ...] = ("in_progress", "calling")


def _part(text: str) -> OutputText:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def usage_body(input_tokens: int, output_tokens: int) -> Usage:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
