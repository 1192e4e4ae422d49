"""The secret routes over the real API app (tests/unit/api_support.py):
create, read, replace, delete; bad input named by its key; the namespace
boundary; audit entries; and no value in any answer or audit entry."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from tests.unit.api_support import Api, workload_doc

from portway.secrets import SecretUnreadableError
from portway.service import secrets as secrets_service

VALUE = b"s3cr3t-planted-value"
ENCODED = base64.b64encode(VALUE).decode()
PATH = "/v1/namespaces/team-a/secrets/db"


def _put(api: Api, data: dict[str, str], who: str = "admin", path: str = PATH, **kw: Any) -> Any:
    return api.request("PUT", path, who, json={"data": data}, **kw)


def _no_value(text: str) -> None:
    assert VALUE.decode() not in text and ENCODED not in text


def test_create_get_list_replace(api: Api) -> None:
    created = _put(api, {"password": ENCODED, "user": base64.b64encode(b"app").decode()})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["outcome"] == "created"
    assert (body["namespace"], body["name"], body["keys"]) == ("team-a", "db", ["password", "user"])
    assert body["sizes"] == {"password": len(VALUE), "user": 3}
    assert body["version"] == 1
    _no_value(created.text)

    got = api.get(PATH, "viewer-a")
    assert got.status_code == 200
    assert {k: got.json()[k] for k in ("keys", "sizes", "version")} == {
        "keys": ["password", "user"],
        "sizes": {"password": len(VALUE), "user": 3},
        "version": 1,
    }
    listed = api.get("/v1/namespaces/team-a/secrets", "viewer-a")
    assert [s["name"] for s in listed.json()["items"]] == ["db"]
    for text in (got.text, listed.text):
        _no_value(text)

    same = _put(api, {"password": ENCODED, "user": base64.b64encode(b"app").decode()})
    assert (same.status_code, same.json()["outcome"], same.json()["version"]) == (
        200,
        "unchanged",
        1,
    )
    # a replace sets all keys: "user" is dropped
    replaced = _put(api, {"password": base64.b64encode(b"other").decode()}, "deployer-a")
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["outcome"] == "configured"
    assert (replaced.json()["keys"], replaced.json()["version"]) == (["password"], 2)


def test_create_only_refuses_an_existing_name(api: Api) -> None:
    first = _put(api, {"password": ENCODED}, headers={"If-None-Match": "*"})
    assert first.status_code == 201, first.text
    again = _put(api, {"password": "b3RoZXI="}, headers={"If-None-Match": "*"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "AlreadyExists"
    assert "secret team-a/db already exists" in again.json()["error"]["message"]
    assert api.get(PATH).json()["version"] == 1  # nothing changed
    odd = _put(api, {"password": ENCODED}, headers={"If-None-Match": '"abc"'})
    assert odd.status_code == 422
    assert "header if-none-match" in odd.json()["error"]["message"]


def test_bad_base64_is_named_by_its_key_and_never_quoted(api: Api) -> None:
    planted = "not base64: " + VALUE.decode()
    refused = _put(api, {"password": planted, "user": "YXBw"})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "InvalidInput"
    assert "data.password: the value is not base64" in error["message"]
    assert [i["path"] for i in error["issues"]] == ["data.password"]
    assert VALUE.decode() not in refused.text
    assert api.get(PATH).status_code == 404  # nothing written
    audit = api.get("/v1/audit", params={"namespace": "team-a"}).json()["items"]
    assert audit[-1]["outcome"] == "failed" and audit[-1]["status"] == 422
    assert VALUE.decode() not in str(audit)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "at least 1 item"),
        ({"../etc": "YQ=="}, "key '../etc' is invalid"),
        ({"password": 42}, "data.password: Input should be a valid string"),
    ],
)
def test_bad_bodies_are_refused(api: Api, data: dict[str, object], expected: str) -> None:
    refused = api.request("PUT", PATH, json={"data": data})
    assert refused.status_code == 422, refused.text
    assert expected in refused.json()["error"]["message"]


def test_delete_refused_while_a_workload_uses_it(api: Api) -> None:
    assert _put(api, {"password": ENCODED}).status_code == 201
    doc = workload_doc(
        "web", secrets=[{"secret": "db", "key": "password", "mountPath": "/run/secrets/db"}]
    )
    applied = api.post("/v1/apply", "deployer-a", json={"documents": [doc]})
    assert applied.status_code == 200, applied.text
    refused = api.delete(PATH, "deployer-a")
    assert refused.status_code == 422
    assert "used by workload(s) team-a/web" in refused.json()["error"]["message"]
    assert api.get(PATH).status_code == 200

    assert api.delete("/v1/namespaces/team-a/workloads/web", "deployer-a").status_code == 200
    deleted = api.delete(PATH, "deployer-a")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["name"] == "db"
    _no_value(deleted.text)
    assert api.get(PATH).status_code == 404
    assert api.delete(PATH).status_code == 404


def test_another_namespace_is_forbidden(api: Api) -> None:
    assert (
        _put(api, {"password": ENCODED}, path="/v1/namespaces/team-b/secrets/db").status_code == 201
    )
    for method, path, body in (
        ("PUT", "/v1/namespaces/team-b/secrets/db", {"data": {"password": ENCODED}}),
        ("PUT", "/v1/namespaces/team-b/secrets/new", {"data": {"password": ENCODED}}),
        ("GET", "/v1/namespaces/team-b/secrets/db", None),
        ("GET", "/v1/namespaces/team-b/secrets", None),
        ("DELETE", "/v1/namespaces/team-b/secrets/db", None),
    ):
        refused = api.request(method, path, "deployer-a", json=body)
        assert refused.status_code == 403, (method, path, refused.text)
        message = refused.json()["error"]["message"]
        assert 'token "alice" (user alice) may not' in message
        assert 'secrets in namespace "team-b"' in message
    # "create" for an existing and a new name alike: a refusal tells nothing
    existing = _put(api, {"p": "YQ=="}, "deployer-a", "/v1/namespaces/team-b/secrets/db")
    assert "may not create secrets" in existing.json()["error"]["message"]
    viewer = _put(api, {"password": ENCODED}, "viewer-a")
    assert viewer.status_code == 403
    assert 'may not create secrets in namespace "team-a"' in viewer.json()["error"]["message"]
    # the across-namespaces list shows only readable namespaces
    assert _put(api, {"password": ENCODED}).status_code == 201
    every = api.get("/v1/secrets", "deployer-a").json()["items"]
    assert {(s["namespace"], s["name"]) for s in every} == {("team-a", "db")}
    assert len(api.get("/v1/secrets").json()["items"]) == 2
    assert api.get("/v1/secrets", "nobody").json()["items"] == []


def test_writes_are_audited_without_values(api: Api) -> None:
    _put(api, {"password": ENCODED}, "deployer-a")
    _put(api, {"password": base64.b64encode(b"two").decode()}, "deployer-a")
    api.delete(PATH, "deployer-a")
    _put(api, {"password": ENCODED}, "viewer-a")
    entries = api.get("/v1/audit", params={"namespace": "team-a"}).json()["items"]
    mine = [
        (e["user"], e["verb"], e["resource"], e["name"], e["outcome"], e["status"])
        for e in entries
        if e["resource"] == "secrets"
    ]
    assert mine == [
        ("alice", "create", "secrets", "db", "succeeded", 201),
        ("alice", "update", "secrets", "db", "succeeded", 200),
        ("alice", "delete", "secrets", "db", "succeeded", 200),
        ("victor", "create", "secrets", "db", "denied", 403),
    ]
    assert VALUE.decode() not in str(entries) and ENCODED not in str(entries)


def test_an_unreadable_secret_is_a_500_naming_the_key_file(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = (
        "secret team-a/db cannot be decrypted with key file /srv/portway/secret.key: "
        "was the key replaced?"
    )

    def unreadable(*_args: object) -> None:
        raise SecretUnreadableError(message)

    monkeypatch.setattr(secrets_service, "get_info", unreadable)
    answer = api.get(PATH)
    assert answer.status_code == 500
    assert answer.json()["error"] == {"code": "SecretUnreadable", "message": message, "issues": []}


def test_the_routes_are_in_the_openapi_document(api: Api) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    one = paths["/v1/namespaces/{namespace}/secrets/{name}"]
    assert set(one) >= {"get", "put", "delete"}
    assert set(one["put"]["responses"]) >= {"200", "201", "403", "409", "422", "500"}
    assert "/v1/namespaces/{namespace}/secrets" in paths and "/v1/secrets" in paths
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    assert "data" in schemas["SecretPut"]["properties"]
    assert "outcome" in schemas["SecretWritten"]["properties"]
