"""Projects end to end with the official openai client: CRUD, pagination, ownership, conversations in a
project, its instructions in chat turns, and what deleting a project does to its conversations."""

from __future__ import annotations

from typing import Any, cast

import openai
import pytest
from pydantic import BaseModel

from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream
from tests.llm_api.test_chat import stored_items


def call(client: openai.OpenAI, method: str, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
    """The projects resource has no SDK method: the client's own request plumbing reaches it."""
    if method == "get":
        found = client.get(path, cast_to=object, options={"params": params})
    elif method == "delete":
        found = client.delete(path, cast_to=object)
    elif method == "patch":
        found = client.patch(path, cast_to=object, body=body)
    else:
        found = client.post(path, cast_to=object, body=body)
    return cast(dict[str, Any], found)


def project_of(conversation: BaseModel) -> Any:
    """The `project_id` the SDK's `Conversation` keeps among its extra fields."""
    return (conversation.model_extra or {}).get("project_id", "absent")


def create_project(client: openai.OpenAI, name: str, instructions: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if instructions is not None:
        body["instructions"] = instructions
    return call(client, "post", "/projects", body)


def test_project_crud(llm_api: LlmApi) -> None:
    client = llm_api.client()
    created = call(
        client,
        "post",
        "/projects",
        {"name": "Thesis", "instructions": "Answer in French.", "metadata": {"course": "bio"}},
    )
    assert created["object"] == "project" and created["id"].startswith("proj_")
    assert created["name"] == "Thesis" and created["instructions"] == "Answer in French."
    assert created["metadata"] == {"course": "bio"}
    assert isinstance(created["created_at"], int) and created["updated_at"] >= created["created_at"]
    project_id = created["id"]
    assert call(client, "get", f"/projects/{project_id}") == created

    renamed = call(client, "post", f"/projects/{project_id}", {"name": "Thesis 2"})
    assert renamed["name"] == "Thesis 2" and renamed["instructions"] == "Answer in French."
    patched = call(client, "patch", f"/projects/{project_id}", {"instructions": None, "metadata": {}})
    assert patched["instructions"] is None and patched["metadata"] == {} and patched["name"] == "Thesis 2"

    deleted = call(client, "delete", f"/projects/{project_id}")
    assert deleted == {"id": project_id, "object": "project.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        call(client, "get", f"/projects/{project_id}")
    with pytest.raises(openai.NotFoundError):
        call(client, "delete", f"/projects/{project_id}")


def test_list_pages_with_a_cursor(llm_api: LlmApi) -> None:
    client = llm_api.client()
    ids = [create_project(client, f"p{i}")["id"] for i in range(5)]
    first = call(client, "get", "/projects", limit=2, order="asc")
    assert first["object"] == "list" and [p["id"] for p in first["data"]] == ids[:2]
    assert first["first_id"] == ids[0] and first["last_id"] == ids[1] and first["has_more"] is True
    rest = call(client, "get", "/projects", limit=10, order="asc", after=first["last_id"])
    assert [p["id"] for p in rest["data"]] == ids[2:] and rest["has_more"] is False
    newest = call(client, "get", "/projects", limit=1)
    assert [p["id"] for p in newest["data"]] == ids[-1:]


def test_names_are_unique_per_user_and_input_is_checked(llm_api: LlmApi) -> None:
    client, other = llm_api.client(), llm_api.client()
    create_project(client, "Same")
    with pytest.raises(openai.ConflictError) as conflict:
        create_project(client, "Same")
    assert conflict.value.body is not None and cast(dict[str, Any], conflict.value.body)["param"] == "name"
    create_project(other, "Same")  # another user's namespace
    second = create_project(client, "Second")
    with pytest.raises(openai.ConflictError):
        call(client, "post", f"/projects/{second['id']}", {"name": "Same"})
    for bad in ({"name": ""}, {"name": "   "}, {"name": "x" * 121}, {"name": "x", "owner": "me"}, {}):
        with pytest.raises(openai.BadRequestError):
            call(client, "post", "/projects", bad)
    with pytest.raises(openai.BadRequestError):
        call(client, "post", "/projects", {"name": "x", "instructions": "i" * 32_769})


def test_another_users_project_is_not_found(llm_api: LlmApi) -> None:
    alice, bob = llm_api.client(), llm_api.client()
    project = create_project(alice, "Private", "secret instructions")
    project_id = project["id"]
    for method, body in (
        ("get", None),
        ("post", {"name": "mine"}),
        ("patch", {"name": "mine"}),
        ("delete", None),
    ):
        with pytest.raises(openai.NotFoundError):
            call(bob, method, f"/projects/{project_id}", body)
    assert call(bob, "get", "/projects")["data"] == []
    # Nor can bob put a conversation into it, or list its conversations.
    with pytest.raises(openai.NotFoundError) as refused:
        bob.conversations.create(extra_body={"project_id": project_id})
    assert cast(dict[str, Any], refused.value.body)["param"] == "project_id"
    own = bob.conversations.create()
    with pytest.raises(openai.NotFoundError):
        bob.conversations.update(own.id, metadata={}, extra_body={"project_id": project_id})
    alice.conversations.create(extra_body={"project_id": project_id})
    assert call(bob, "get", "/conversations", project_id=project_id)["data"] == []
    assert call(alice, "get", f"/projects/{project_id}") == project  # untouched


def test_conversations_join_leave_and_filter_by_project(llm_api: LlmApi) -> None:
    client = llm_api.client()
    project_id = create_project(client, "Work")["id"]
    inside = client.conversations.create(metadata={"n": "1"}, extra_body={"project_id": project_id})
    assert project_of(inside) == project_id
    outside = client.conversations.create()
    assert project_of(outside) is None
    assert project_of(client.conversations.retrieve(inside.id)) == project_id

    listed = call(client, "get", "/conversations", project_id=project_id)
    assert [c["id"] for c in listed["data"]] == [inside.id]
    moved = client.conversations.update(
        outside.id, metadata={"n": "2"}, extra_body={"project_id": project_id}
    )
    assert project_of(moved) == project_id
    listed = call(client, "get", "/conversations", project_id=project_id, order="asc")
    assert [c["id"] for c in listed["data"]] == [inside.id, outside.id]
    # Updating other fields keeps the project; `null` takes the conversation out of it.
    kept = client.conversations.update(inside.id, metadata={"n": "3"})
    assert project_of(kept) == project_id
    left = client.conversations.update(inside.id, metadata={"n": "3"}, extra_body={"project_id": None})
    assert project_of(left) is None
    listed = call(client, "get", "/conversations", project_id=project_id)
    assert [c["id"] for c in listed["data"]] == [outside.id]
    assert len(call(client, "get", "/conversations")["data"]) == 2


def test_project_instructions_lead_every_chat_turn_and_are_not_stored(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    token = llm_api.token()
    client = llm_api.client(token)
    project = create_project(client, "French", "Always answer in French.")
    conversation = client.conversations.create(extra_body={"project_id": project["id"]})

    client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}],
        extra_body={"conversation": conversation.id},
    )
    assert upstream.requests[-1]["messages"] == [
        {"role": "system", "content": "Always answer in French."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
    ]
    stream = client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "again"}],
        stream=True,
        extra_body={"conversation": conversation.id},
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    sent = upstream.requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Always answer in French."}
    assert [m["role"] for m in sent[1:]] == ["user", "assistant", "user"]

    items = stored_items(llm_api, token, conversation.id, 4)
    assert [item["role"] for item in items] == ["user", "assistant", "user", "assistant"]
    assert "French" not in str(items)

    # Changed instructions apply from the next turn on.
    call(client, "post", f"/projects/{project['id']}", {"instructions": "Answer in German."})
    client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "third"}],
        extra_body={"conversation": conversation.id, "store": False},
    )
    assert upstream.requests[-1]["messages"][0] == {"role": "system", "content": "Answer in German."}


def test_a_new_conversation_can_start_in_a_project(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    client = llm_api.client()
    project = create_project(client, "Inline", "Use metric units.")
    completion = client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "how far?"}],
        extra_body={"conversation": {"project_id": project["id"]}},
    )
    assert upstream.requests[-1]["messages"][0] == {"role": "system", "content": "Use metric units."}
    conversation_id = cast(dict[str, Any], completion.model_extra)["conversation"]["id"]
    assert project_of(client.conversations.retrieve(conversation_id)) == project["id"]

    other = llm_api.client()
    with pytest.raises(openai.NotFoundError):
        other.chat.completions.create(
            model=FAKE_MODEL,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"conversation": {"project_id": project["id"]}},
        )
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=FAKE_MODEL,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"conversation": {"id": conversation_id, "project_id": project["id"]}},
        )


def test_deleting_a_project_detaches_its_conversations(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    token = llm_api.token()
    client = llm_api.client(token)
    project = create_project(client, "Doomed", "Speak like a pirate.")
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "kept"}],
        extra_body={"project_id": project["id"]},
    )
    call(client, "delete", f"/projects/{project['id']}")

    detached = client.conversations.retrieve(conversation.id)
    assert project_of(detached) is None
    assert [item.id for item in client.conversations.items.list(conversation.id)]  # its items stay
    client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "still here?"}],
        extra_body={"conversation": conversation.id},
    )
    assert all(m["role"] != "system" for m in upstream.requests[-1]["messages"])
    # A new project of the same name is a new project: the old conversations do not come back.
    again = create_project(client, "Doomed")
    assert call(client, "get", "/conversations", project_id=again["id"])["data"] == []
