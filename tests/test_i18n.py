"""Chinese messages through Babel catalogues (client-contract.md, "Language, time, parameters"):
`Accept-Language: zh-CN` (or zh, zh-Hans) answers problem titles and details in Chinese with
`Content-Language: zh-CN`; the code never changes; every catalogued code and every extracted
message has a translation."""

from __future__ import annotations

import ast
import re
import string
from datetime import timedelta
from pathlib import Path

import pytest

from app.core import errors
from app.core.errors import PROBLEM_CODES, DomainError
from app.core.i18n import LOCALE_DIR, catalogue, msg, negotiate, translate
from tests.conftest import Factory

ROOT = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u4e00-\u9fff]")
ZH = {"Accept-Language": "zh-CN"}
_DETAIL_FIRST = {
    name
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, DomainError) and name not in ("InvalidTransition", "PreconditionFailed")
} | {"Unresolvable"}


def _keywords() -> dict[str, tuple[int, ...]]:
    """The extraction keywords `make messages` uses (MESSAGE_KEYWORDS in the Makefile)."""
    text = (ROOT / "Makefile").read_text()
    block = re.search(r"^MESSAGE_KEYWORDS := (.*?)(?<!\\)\n", text, re.S | re.M)
    assert block, "MESSAGE_KEYWORDS not found in the Makefile"
    keywords: dict[str, tuple[int, ...]] = {}
    for spec in re.findall(r"-k (\S+)", block.group(1)):
        name, _, index = spec.partition(":")
        keywords[name] = (int(index),) if index else (1,)
    return keywords


def _extracted() -> set[str]:
    from babel.messages.extract import extract_from_dir

    found = extract_from_dir(
        str(ROOT / "app"), method_map=[("**.py", "python")], keywords=_keywords(), comment_tags=(), strip_comment_tags=True
    )
    return {text for _, _, text, _, _ in found if isinstance(text, str)}


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_the_zh_cn_catalogue_translates_every_extracted_message():
    from babel.messages.pofile import read_po

    path = LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        po = read_po(handle)
    entries = {m.id: m for m in po if m.id}
    assert not [m.id for m in entries.values() if not m.string], "empty msgstr"
    assert not [m.id for m in entries.values() if m.fuzzy], "fuzzy entries"
    extracted = _extracted()
    assert len(extracted) > 200, len(extracted)
    assert sorted(extracted - set(entries)) == [], "run `make messages` and translate the new entries"
    for text, entry in entries.items():
        assert isinstance(entry.string, str)
        assert _fields(text) == _fields(entry.string), (text, entry.string)  # the same named parameters
        assert CJK.search(entry.string), (text, entry.string)  # Chinese, not the English copied


def _error_classes() -> set[type[DomainError]]:
    import app.main  # noqa: F401 - every module, so every error class, imported

    found: set[type[DomainError]] = set()
    stack = [DomainError]
    while stack:
        cls = stack.pop()
        found.add(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_every_error_class_is_an_extraction_keyword():
    """A new error class whose messages `make messages` does not extract would answer English
    to a Chinese caller: every DomainError subclass of the service is in MESSAGE_KEYWORDS."""
    keywords = _keywords()
    own_messages = {"InvalidTransition", "PreconditionFailed"}  # they build their detail themselves
    missing = sorted(
        cls.__name__
        for cls in _error_classes()
        if cls.__module__.startswith("app.") and cls.__name__ not in keywords and cls.__name__ not in own_messages
    )
    assert missing == [], f"add to MESSAGE_KEYWORDS in the Makefile: {missing}"


def test_every_code_has_a_chinese_title():
    zh = catalogue("zh_CN")
    missing = [code for code, entry in PROBLEM_CODES.items() if not CJK.search(zh.get(entry.title, ""))]
    assert not missing, missing


def test_messages_at_raise_sites_are_templates_not_formatted_strings():
    """A detail built with an f-string or `%`/`.format` could not be found in the catalogue:
    the first argument of every DomainError is a literal or `msg(...)`."""
    wrong = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in _DETAIL_FIRST and node.args:
                    first = node.args[0]
                    literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
                    template = isinstance(first, ast.Call) and isinstance(first.func, ast.Name) and first.func.id == "msg"
                    if not (literal or template or path.name == "errors.py"):
                        wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                if node.func.id in ("msg", "N_") and not (node.args and isinstance(node.args[0], ast.Constant)):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} (msg of a non-literal)")
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, "en"),
        ("zh-CN", "zh_CN"),
        ("zh-cn", "zh_CN"),
        ("zh", "zh_CN"),
        ("zh-Hans", "zh_CN"),
        ("zh-Hans-CN,zh;q=0.9", "zh_CN"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("fr-FR, zh-CN;q=0.5", "zh_CN"),
        ("zh-CN;q=0, en", "en"),
        ("de", "en"),
        ("*", "en"),
        (";;,,q=", "en"),
    ],
)
def test_accept_language_negotiation(header, language):
    assert negotiate(header) == language


def test_a_message_renders_its_parameters_in_each_language():
    text = msg("{month} is already published", month="2026-11")
    assert text.render() == "2026-11 is already published"
    assert text.render("zh_CN") == "2026-11 已发布"
    assert translate("Validation failed", "zh_CN") == "请求参数有误"


def _chinese(problem: dict) -> None:
    assert CJK.search(problem["title"]) and CJK.search(problem["detail"]), problem


async def test_problems_answer_in_chinese_for_zh_cn_and_keep_their_code(client, factory: Factory):
    merchant = await factory.user("merchant")
    creator = await factory.user("creator")
    # 401 (no token): title and detail in Chinese, code as in English
    r = await client.get("/v1/wallet", headers=ZH)
    assert r.status_code == 401 and r.headers["content-language"] == "zh-CN", r.text
    assert r.json()["code"] == "unauthenticated" and r.json()["title"] == "请先登录"
    _chinese(r.json())
    english = await client.get("/v1/wallet")
    assert english.headers["content-language"] == "en" and english.json()["title"] == "Authentication required"
    assert english.json()["code"] == r.json()["code"]
    # 404 with a parameter in the template
    r = await client.get("/v1/task-orders/tko_missing", headers={**merchant.headers, **ZH})
    assert r.status_code == 404 and r.json()["title"] == "未找到", r.text
    _chinese(r.json())
    # 409 with named parameters (the state, the action)
    from tests.test_task_orders_support import create_order, minute, ready_merchant

    payer, product_id = await ready_merchant(client, factory)
    order = await create_order(client, payer, creator, product_id, minute(await factory.now()) + timedelta(days=2))
    r = await client.post(f"/v1/task-orders/{order['id']}/approve", headers={**payer.headers, "Accept-Language": "zh"})
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition", r.text
    assert r.json()["title"] == "当前状态下不能执行此操作"
    assert "pending_acceptance" in r.json()["detail"] and "approve" in r.json()["detail"]
    _chinese(r.json())
    # a domain rule's 422 with its errors list
    r = await client.get("/v1/task-orders", headers={**merchant.headers, **ZH}, params={"state": "x"})
    assert r.status_code == 422 and r.json()["detail"] == "不支持的查询参数：state", r.text
    assert CJK.search(r.json()["errors"][0]["msg"])
    # role names inside a message are translated with it
    r = await client.get("/v1/admin/clock", headers={**merchant.headers, **ZH})
    assert r.status_code == 403 and r.json()["detail"] == "此操作仅限以下角色：运营人员", r.text
    # a route that does not exist
    r = await client.get("/v1/nowhere", headers=ZH)
    assert r.status_code == 404 and r.json()["title"] == "未找到" and r.json()["detail"] == "未找到", r.text


async def test_schema_validation_errors_answer_in_chinese(client, factory: Factory):
    merchant = await factory.user("merchant")
    body = {"title": "", "price_fen": -1, "inventory": "many", "colour": "red"}
    r = await client.post("/v1/products", headers={**merchant.headers, **ZH}, json=body)
    assert r.status_code == 422 and r.headers["content-language"] == "zh-CN", r.text
    problem = r.json()
    assert problem["code"] == "validation_failed" and problem["title"] == "请求参数有误"
    assert problem["detail"].startswith("请求参数有误：") and "body." in problem["detail"]
    assert all(CJK.search(e["msg"]) for e in problem["errors"]), problem["errors"]
    english = (await client.post("/v1/products", headers=merchant.headers, json=body)).json()
    assert english["title"] == "Validation failed" and english["detail"].startswith("the request is not valid: ")
    assert [e["loc"] for e in english["errors"]] == [e["loc"] for e in problem["errors"]]
    assert not any(CJK.search(e["msg"]) for e in english["errors"])
    # a validator's own message (a time without a zone) is translated too
    op = await factory.operator()
    times = {"signup_deadline": "2030-01-01T10:00:00", "product_deadline": "2030-01-02T10:00:00Z"}
    times |= {"live_from": "2030-01-03T10:00:00Z", "live_to": "2030-01-04T10:00:00Z"}
    r = await client.post("/v1/campaigns", headers={**op.headers, **ZH}, json={"title": "t", "description": "d", **times})
    assert r.status_code == 422 and r.json()["errors"][0]["msg"].startswith("时间需带时区"), r.text
    # and one with parameters (a template raised as the ValueError's message)
    r = await client.post("/v1/task-orders", headers={**merchant.headers, **ZH}, json={"title": "直播🔥"})
    [title] = [e["msg"] for e in r.json()["errors"] if e["loc"][:2] == ["body", "title"]]
    assert title == "标题只能包含汉字、字母、数字和标点符号（不能包含 '🔥'）", r.text
    r = await client.post("/v1/task-orders", headers=merchant.headers, json={"title": "直播🔥"})
    [title] = [e["msg"] for e in r.json()["errors"] if e["loc"][:2] == ["body", "title"]]
    assert "may only hold" in title and "'🔥'" in title, r.text


async def test_the_language_headers_are_declared_on_every_operation(client):
    schema = (await client.get("/openapi.json")).json()
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert len(operations) > 50
    for operation in operations:
        headers = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
        assert headers.count("Accept-Language") == 1, operation["operationId"]
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert "Content-Language" in response["headers"], (operation["operationId"], status)
