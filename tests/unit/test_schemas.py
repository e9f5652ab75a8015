"""The JSON Schemas goldsmith publishes ship with the package, each $id the
schema URI that code writes into its documents."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from builder.record import BUILD_SCHEMA
from validate.results import SCHEMA as VALIDATION_SCHEMA
from validate.statement import PREDICATE_TYPE

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = {
    "build-v1.schema.json": BUILD_SCHEMA,
    "validation-v1.schema.json": VALIDATION_SCHEMA,
    "template-statement-v1.schema.json": PREDICATE_TYPE,
}


@pytest.mark.parametrize(("name", "uri"), SCHEMAS.items())
def test_each_schema_id_is_the_uri_in_code(name: str, uri: str) -> None:
    schema = json.loads((resources.files("validate") / "schemas" / name).read_text())
    assert schema["$id"] == uri


def test_the_schemas_are_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["validate"]
    shipped = {p.name for pattern in patterns for p in (ROOT / "validate").glob(pattern)}
    assert set(SCHEMAS) <= shipped
    assert {p.name for p in (ROOT / "validate" / "schemas").glob("*.json")} == set(SCHEMAS)
