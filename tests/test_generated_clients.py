"""Client teams generate their clients from the OpenAPI schema: the Python one (with
openapi-python-client) must generate without a warning and work against the service; the
TypeScript one (openapi-typescript, from npm) must generate."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import IS_POSTGRES

pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="the schema is the same on every database: SQLite pass only")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory, application) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(application.openapi()))
    return path


def test_component_names_do_not_collide(application):
    names = application.openapi()["components"]["schemas"]
    assert not [n for n in names if n.startswith("app__")], "two modules define a schema of the same name"


def test_enums_are_named(application):
    schemas = application.openapi()["components"]["schemas"]
    assert "Role" in schemas and schemas["Role"]["enum"]
    assert "ProductStatus" in schemas


@pytest.fixture(scope="module")
def python_client(schema_file) -> Path:
    out = schema_file.parent / "lc_client"
    # SVG answers (QR codes, diagrams) come out as binary files.
    config = schema_file.parent / "client-config.yml"
    config.write_text("content_type_overrides:\n  image/svg+xml: application/octet-stream\n")
    env_path = f"{BIN}:{Path(shutil.which('python3') or sys.executable).parent}"
    result = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(schema_file),
            "--meta",
            "none",
            "--output-path",
            str(out),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": env_path},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    return out


async def test_python_client_against_the_service(python_client, application, factory):
    sys.path.insert(0, str(python_client.parent))
    try:
        client_mod = importlib.import_module("lc_client")
        get_me = importlib.import_module("lc_client.api.accounts.get_my_account")
        create_product = importlib.import_module("lc_client.api.products.create_product")
        models = importlib.import_module("lc_client.models")
    finally:
        sys.path.remove(str(python_client.parent))
    merchant = await factory.user("merchant", shop_name="生成客户端店")
    token = merchant.headers["Authorization"].split()[1]
    client = client_mod.AuthenticatedClient(
        base_url="http://test", token=token, httpx_args={"transport": httpx.ASGITransport(app=application)}
    )
    async with client:
        me = await get_me.asyncio(client=client)
        assert me.id == merchant.id and me.role.value == "merchant"
        created = await create_product.asyncio_detailed(
            client=client, body=models.ProductCreate(title="客户端商品", price_fen=100, inventory=5)
        )
        assert created.status_code == 201 and created.parsed.title == "客户端商品"


def test_typescript_client_generates(schema_file):
    from tests.node_tools import tools

    node_modules = tools()  # the openapi-typescript docs/examples/package-lock.json pins
    workdir = schema_file.parent
    result = subprocess.run(
        [str(node_modules / ".bin/openapi-typescript"), str(schema_file), "-o", str(workdir / "schema.d.ts")],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    text = (workdir / "schema.d.ts").read_text()
    assert '"/v1/task-orders"' in text and "operations" in text and "create_product" in text
