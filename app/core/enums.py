"""Closed sets of values built from their single source (a machine's states and actions, its event
catalogue, the error codes), published to OpenAPI as named enums.

`OneOf("TaskOrderState", states)` is Pydantic metadata: `Annotated[str, TASK_ORDER.state_enum]`
validates and documents the field as the enum `TaskOrderState` (a `$ref` every generated client
turns into a union of literals, so a misspelt state fails to compile), while the code keeps
handling plain `str` values (a `StrEnum` member is one)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any, cast

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema


class OneOf:
    """A named enum of strings, usable as `Annotated[str, OneOf(...)]` in schemas and parameters."""

    def __init__(self, name: str, values: Iterable[str]) -> None:
        self.name = name
        self.values: tuple[str, ...] = tuple(dict.fromkeys(values))
        if not self.values:
            raise ValueError(f"{name}: an enum needs at least one value")
        # the functional API, built at run time from the source (cast: mypy only knows literal calls)
        self.enum: type[StrEnum] = cast(Any, StrEnum)(name, [(v, v) for v in self.values])

    def __contains__(self, value: object) -> bool:
        return value in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __repr__(self) -> str:
        return f"OneOf({self.name!r}, {list(self.values)!r})"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return handler.generate_schema(self.enum)


def camel(name: str) -> str:
    """`task_order` → `TaskOrder`, `campaign-signup` → `CampaignSignup`."""
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
