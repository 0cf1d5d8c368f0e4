"""Conversations CRUD and items with cursor pagination, in OpenAI's shapes."""

from __future__ import annotations

from tests.harness.llm_api import LlmApi


def test_conversation_crud(llm_api: LlmApi) -> None:
    with llm_api.http() as http:
        created = http.post(
            "/v1/conversations",
            json={
                "title": "Trip",
                "metadata": {"topic": "travel"},
                "items": [{"type": "message", "role": "user", "content": "Plan a trip"}],
            },
        ).json()
        assert created["object"] == "conversation" and created["id"].startswith("conv_")
        assert created["title"] == "Trip" and created["metadata"] == {"topic": "travel"}
        assert isinstance(created["created_at"], int)
        conversation_id = created["id"]
        assert http.get(f"/v1/conversations/{conversation_id}").json() == created
        updated = http.post(
            f"/v1/conversations/{conversation_id}", json={"metadata": {"topic": "work"}}
        ).json()
        assert updated["metadata"] == {"topic": "work"} and updated["title"] == "Trip"
        items = http.get(f"/v1/conversations/{conversation_id}/items").json()
        assert items["object"] == "list" and len(items["data"]) == 1
        item = items["data"][0]
        assert item["type"] == "message" and item["role"] == "user" and item["status"] == "completed"
        assert item["content"] == [{"type": "input_text", "text": "Plan a trip"}]
        deleted = http.delete(f"/v1/conversations/{conversation_id}").json()
        assert deleted == {"id": conversation_id, "object": "conversation.deleted", "deleted": True}
        assert http.get(f"/v1/conversations/{conversation_id}").status_code == 404


def test_items_append_get_delete_and_paginate(llm_api: LlmApi) -> None:
    with llm_api.http() as http:
        conversation_id = http.post("/v1/conversations", json={}).json()["id"]
        appended = http.post(
            f"/v1/conversations/{conversation_id}/items",
            json={
                "items": [
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"m{i}"}]}
                    for i in range(5)
                ]
                + [
                    {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "42"},
                ]
            },
        ).json()
        assert appended["object"] == "list" and len(appended["data"]) == 7 and appended["has_more"] is False
        ids = [item["id"] for item in appended["data"]]
        assert appended["data"][5] | {} == appended["data"][5] and appended["data"][5]["call_id"] == "call_1"

        page1 = http.get(
            f"/v1/conversations/{conversation_id}/items", params={"limit": 3, "order": "asc"}
        ).json()
        assert [i["id"] for i in page1["data"]] == ids[:3] and page1["has_more"] is True
        assert page1["first_id"] == ids[0] and page1["last_id"] == ids[2]
        page2 = http.get(
            f"/v1/conversations/{conversation_id}/items",
            params={"limit": 3, "order": "asc", "after": page1["last_id"]},
        ).json()
        assert [i["id"] for i in page2["data"]] == ids[3:6]
        page3 = http.get(
            f"/v1/conversations/{conversation_id}/items",
            params={"limit": 3, "order": "asc", "after": page2["last_id"]},
        ).json()
        assert [i["id"] for i in page3["data"]] == ids[6:] and page3["has_more"] is False
        newest = http.get(f"/v1/conversations/{conversation_id}/items", params={"limit": 2}).json()
        assert [i["id"] for i in newest["data"]] == [ids[6], ids[5]]

        one = http.get(f"/v1/conversations/{conversation_id}/items/{ids[6]}").json()
        assert one == {**appended["data"][6]}
        after_delete = http.delete(f"/v1/conversations/{conversation_id}/items/{ids[0]}").json()
        assert after_delete["object"] == "conversation" and after_delete["id"] == conversation_id
        assert http.get(f"/v1/conversations/{conversation_id}/items/{ids[0]}").status_code == 404
        assert (
            http.get(f"/v1/conversations/{conversation_id}/items", params={"after": "msg_nope"}).status_code
            == 400
        )


def test_conversation_list_pages_are_per_user(llm_api: LlmApi) -> None:
    with llm_api.http() as http, llm_api.http() as other:
        mine = [http.post("/v1/conversations", json={"title": f"c{i}"}).json()["id"] for i in range(3)]
        other.post("/v1/conversations", json={"title": "theirs"})
        first = http.get("/v1/conversations", params={"limit": 2}).json()
        assert [c["id"] for c in first["data"]] == [mine[2], mine[1]] and first["has_more"] is True
        rest = http.get("/v1/conversations", params={"limit": 2, "after": first["last_id"]}).json()
        assert [c["id"] for c in rest["data"]] == [mine[0]] and rest["has_more"] is False


def test_conversation_input_is_validated(llm_api: LlmApi) -> None:
    with llm_api.http() as http:
        bad = [
            {"title": "x" * 300},
            {"metadata": {f"k{i}": "v" for i in range(17)}},
            {"unknown": True},
            {"items": [{"type": "message", "role": "robot", "content": "x"}]},
        ]
        for body in bad:
            response = http.post("/v1/conversations", json=body)
            assert response.status_code == 400, body
            assert response.json()["error"]["type"] == "invalid_request_error"
        conversation_id = http.post("/v1/conversations", json={}).json()["id"]
        too_many = {"items": [{"role": "user", "content": "x"}] * 21}
        assert http.post(f"/v1/conversations/{conversation_id}/items", json=too_many).status_code == 400
        assert http.get("/v1/conversations", params={"limit": 0}).status_code == 400
