"""The catalogue of problem codes (app/core/errors.py PROBLEM_CODES): every code the service can
answer is in it with its HTTP status and English title, a DomainError with any other code is
refused, and the OpenAPI Problem schema's `code` is an enum generated from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.core import errors
from app.core.errors import PROBLEM_CODES, Conflict, DomainError, UnknownProblemCode, ValidationFailed
from tests.conftest import Factory

APP = Path(__file__).resolve().parent.parent / "app"
# every DomainError class by name, with the status and code it answers by default
_CLASSES = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, DomainError) and cls.__module__ == errors.__name__
}


def _literals(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _literals(node.body) + _literals(node.orelse)
    return []


def _raise_sites() -> list[tuple[str, str, str, int | None]]:
    """(where, class name, code, explicit status) for every DomainError built in app/."""
    sites = []
    for path in sorted(APP.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CLASSES):
                continue
            where = f"{path.relative_to(APP.parent)}:{node.lineno}"
            kwargs = {k.arg: k.value for k in node.keywords if k.arg}
            status = kwargs["status"].value if isinstance(kwargs.get("status"), ast.Constant) else None
            codes = _literals(kwargs["code"]) if "code" in kwargs else [_CLASSES[node.func.id].code]
            sites += [(where, node.func.id, code, status) for code in codes]
    return sites


def _problem_calls() -> list[tuple[str, str, int]]:
    """(where, code, status) of every `problem(status, code, ...)` answer written directly."""
    calls = []
    for path in sorted(APP.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "problem"
                and len(node.args) >= 2
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[1], ast.Constant)
            ):
                calls.append((f"{path.relative_to(APP.parent)}:{node.lineno}", node.args[1].value, node.args[0].value))
    return calls


def test_a_domain_error_refuses_a_code_not_in_the_catalogue():
    with pytest.raises(UnknownProblemCode):
        Conflict("typo", code="alredy_bound")
    with pytest.raises(UnknownProblemCode):
        ValidationFailed("typo", code="validation_faild")
    # a known one is fine, and its title comes from the catalogue
    known = Conflict("x", code="already_bound")
    assert (known.status, known.code, str(known.title)) == (409, "already_bound", "Already bound")


def test_every_code_the_service_raises_is_in_the_catalogue_with_the_status_it_answers():
    sites = _raise_sites()
    assert len(sites) > 150, len(sites)  # the scan sees the raise sites
    unknown = [site for site in sites if site[2] not in PROBLEM_CODES]
    assert not unknown, unknown
    wrong_status = [
        (where, code, status or _CLASSES[name].status, PROBLEM_CODES[code].status)
        for where, name, code, status in sites
        if (status or _CLASSES[name].status) != PROBLEM_CODES[code].status
    ]
    assert not wrong_status, wrong_status
    for cls in _CLASSES.values():
        assert PROBLEM_CODES[cls.code].status == cls.status, cls


def test_every_answer_written_directly_uses_a_catalogued_code():
    from app.api.errors import _STATUS_CODES

    calls = _problem_calls()
    assert len(calls) >= 8, calls
    assert [c for c in calls if c[1] not in PROBLEM_CODES or PROBLEM_CODES[c[1]].status != c[2]] == []
    assert {status: PROBLEM_CODES[code].status for status, code in _STATUS_CODES.items()} == {s: s for s in _STATUS_CODES}


def test_the_codes_of_the_parallel_work_are_catalogued():
    expected = {
        "weak_password": 422,
        "wrong_password": 403,
        "account_suspended": 401,
        "rate_limited": 429,
        "headers_too_large": 431,
        "service_unavailable": 503,
        "webhook_url_not_allowed": 422,
        "session_ended": 401,
        "precondition_failed": 412,
        "quota_exhausted": 429,
    }
    assert {code: PROBLEM_CODES[code].status for code in expected} == expected
    assert all(entry.title and entry.title[0].isupper() for entry in PROBLEM_CODES.values())
    assert all(code == entry.code and code.islower() for code, entry in PROBLEM_CODES.items())


async def test_the_openapi_problem_code_is_the_catalogue_enum(client):
    schema = (await client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    assert components["Problem"]["properties"]["code"] == {"$ref": "#/components/schemas/ProblemCode"}
    assert components["ProblemCode"]["enum"] == list(PROBLEM_CODES)
    assert "`already_bound` (409)" in components["ProblemCode"]["description"]


async def test_answers_carry_the_catalogues_title(client, factory: Factory):
    merchant = await factory.user("merchant")
    r = await client.get("/v1/task-orders/tko_missing", headers=merchant.headers)
    assert r.status_code == 404 and r.json()["code"] == "not_found" and r.json()["title"] == "Not found", r.text
    r = await client.post("/v1/xingtu-binding", headers=merchant.headers, json={})
    assert r.status_code == 200
    creator = await factory.user("creator")
    r = await client.post("/v1/xingtu-binding", headers=creator.headers, json={})
    assert r.status_code == 403 and r.json()["title"] == "Forbidden", r.text
    r = await client.get("/v1/no-such-route")
    assert r.status_code == 404 and r.json()["code"] in PROBLEM_CODES
