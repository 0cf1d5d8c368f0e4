"""`python_exec`: run code in the SandboxFusion sandbox (never in this process)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from apps.mcp_tools.services.errors import ToolFailure
from apps.mcp_tools.services.sandbox import RunRequest
from apps.mcp_tools.tools.context import ToolContext, services_of
from apps.mcp_tools.tools.progress import with_progress

MAX_FILES = 20
MAX_FILES_CHARS = 1_000_000

DESCRIPTION = (
    "Run a program in an isolated sandbox and get its stdout, stderr, exit code and run time. "
    "Python by default; print what you want to see. Each call starts fresh (no state is kept "
    "between calls). `files` are written next to the program before it runs. A non-zero exit_code "
    "or timed_out=true means the program failed: read stderr, fix the code and try again."
)


def _check_files(files: dict[str, str]) -> None:
    if len(files) > MAX_FILES:
        raise ToolFailure(f"Too many files ({len(files)}); at most {MAX_FILES}.")
    if sum(len(text) for text in files.values()) > MAX_FILES_CHARS:
        raise ToolFailure(f"The files are too large together (limit {MAX_FILES_CHARS} characters).")
    for name in files:
        if not name or name.startswith("/") or ".." in name.split("/") or len(name) > 255:
            raise ToolFailure(f"Invalid file name {name!r}: use a relative path such as 'data/input.csv'.")


async def python_exec(
    code: Annotated[str, Field(min_length=1, max_length=100_000, description="The program's source code.")],
    ctx: ToolContext,
    language: Annotated[
        str,
        Field(
            pattern=r"^[a-z0-9_]{1,20}$", description="Sandbox language: python (default), bash, nodejs, …"
        ),
    ] = "python",
    timeout: Annotated[
        float | None,
        Field(gt=0, le=600, description="Seconds the program may run (the server caps it)."),
    ] = None,
    files: Annotated[
        dict[str, str] | None,
        Field(description="Text files to create before running: {relative path: content}."),
    ] = None,
    stdin: Annotated[str | None, Field(max_length=100_000, description="Standard input.")] = None,
) -> dict[str, Any]:
    if files:
        _check_files(files)
    request = RunRequest(code=code, language=language, timeout_seconds=timeout, files=files, stdin=stdin)
    services = services_of(ctx)
    limit = services.sandbox.run_timeout(timeout)
    return await with_progress(
        ctx, services.sandbox.run(request), what="python_exec", every=services.progress_seconds, total=limit
    )


def register(server: MCPServer[Any]) -> None:
    server.add_tool(python_exec, description=DESCRIPTION)
