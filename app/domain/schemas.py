"""Pydantic shapes shared by every module."""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, ClassVar, Generic, TypeVar, Union, get_args, get_origin

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NaiveDatetime, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from app.core.enums import OneOf, camel
from app.core.i18n import N_
from app.core.times import UtcDatetime
from app.state.core import Workflow

T = TypeVar("T")


class Strict(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped; and a value is what it
    says (security.md, "Input that is exactly what it says"): an integer field takes a JSON
    integer (not `"100"`, `true` or `1.0`), a boolean takes `true`/`false` (not `0`/`1` or
    `"true"`), a number never takes a string or a boolean (a decimal may be its text), a date
    takes exactly its `YYYY-MM-DD` text and a datetime or time its ISO text (never a number of
    seconds). Pydantic's `strict=True` cannot do this alone: FastAPI validates the parsed JSON
    in Python mode, where strict refuses the ISO strings of dates and the values of enums too. So
    `_exact_json_types` checks the JSON value against the field's type before Pydantic converts
    it; everything else (enums, literals, ISO texts) converts as before."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="before")
    @classmethod
    def _exact_json_types(cls, value: Any, info: ValidationInfo) -> Any:
        check = _field_checker(cls, info.field_name or "")
        if check is not None:
            check(value)
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """NUL is never text (PostgreSQL refuses it): a 422 here, not a database error later."""
        if _has_nul(value):
            raise ValueError(N_("must not contain the NUL character"))
        return value


Check = Callable[[Any], None]


def _refuse(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _int(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse("int_type", "Input should be an integer (a JSON number without a fraction)")


def _bool(value: Any) -> None:
    if not isinstance(value, bool):
        raise _refuse("bool_type", "Input should be true or false")


def _number(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise _refuse("float_type", "Input should be a number")


def _decimal(value: Any) -> None:
    """An exact decimal (a score such as `"4.50"`) may come as its text, as is customary; never
    as a boolean."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise _refuse("decimal_type", "Input should be a number or its decimal text")


def _iso_text(kind: type) -> Check:
    def check(value: Any) -> None:
        if not isinstance(value, (str, kind)):
            raise _refuse(f"{kind.__name__}_type", f"Input should be a {kind.__name__} in ISO 8601 text")

    return check


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TEXT = "Input should be a date as its YYYY-MM-DD text, a day of the calendar"


def _iso_date(value: Any) -> None:
    """A date is exactly its `YYYY-MM-DD` text, a real calendar day (security.md): not a number
    of seconds in a string, not a datetime, not ISO 8601's other forms (`20260105`, `2026-W02-1`),
    all of which Pydantic's own parsing would take."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return  # a date built in Python (not from JSON)
    if not isinstance(value, str):
        raise _refuse("date_type", _DATE_TEXT)
    if _ISO_DATE.fullmatch(value) is None:
        raise _refuse("date_parsing", _DATE_TEXT)
    try:
        date.fromisoformat(value)
    except ValueError:
        raise _refuse("date_parsing", _DATE_TEXT) from None


_SCALARS: dict[Any, Check] = {
    int: _int,
    bool: _bool,
    float: _number,
    Decimal: _decimal,
    date: _iso_date,
    datetime: _iso_text(datetime),
    AwareDatetime: _iso_text(datetime),
    NaiveDatetime: _iso_text(datetime),
    time: _iso_text(time),
}


@cache
def _field_checker(model: type[BaseModel], name: str) -> Check | None:
    field = model.model_fields.get(name)
    return _checker(field.annotation) if field is not None else None


def _checker(annotation: Any) -> Check | None:
    """What a JSON value for `annotation` must be (None: Pydantic's own check is enough)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _checker(get_args(annotation)[0])
    if isinstance(annotation, type) and annotation in _SCALARS:
        return _SCALARS[annotation]
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        inner = _checker(options[0]) if len(options) == 1 else None
        if inner is None:
            return None  # a union of several types: Pydantic's smart union picks exactly

        def optional(value: Any) -> None:
            if value is not None:
                inner(value)

        return optional
    if origin in (list, set, frozenset, tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        item = _checker(args[0]) if len(args) == 1 else None
        if item is None:
            return None

        def each(value: Any) -> None:
            if isinstance(value, (list, tuple, set, frozenset)):
                for element in value:
                    item(element)

        return each
    if origin is dict:
        key_value = get_args(annotation)
        member = _checker(key_value[1]) if len(key_value) == 2 else None
        if member is None:
            return None

        def values(value: Any) -> None:
            if isinstance(value, dict):
                for element in value.values():
                    member(element)

        return values
    return None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


class PutBody(Strict):
    """A PUT's body: it accepts the answer its GET (or the PUT itself) gave, so read-modify-write
    works (client-contract.md). The fields the server owns, named in `server_owned`, are
    ignored; any other unknown field is still 422."""

    server_owned: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _ignore_server_owned(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.server_owned:
            return {k: v for k, v in data.items() if k not in cls.server_owned}
        return data


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class TransitionOut(Out):
    from_state: str | None
    to_state: str
    action: str
    actor_id: str
    actor_role: str
    reason: Any | None = None
    at: UtcDatetime


@cache
def history_of(workflow: Workflow) -> type[TransitionOut]:
    """The answer of an entity's `/history`, its states and actions the machine's named enums
    (`TaskOrderTransitionOut` …), so a client switches over them exhaustively."""
    annotations = {
        "from_state": Annotated[str, workflow.state_enum] | None,
        "to_state": Annotated[str, workflow.state_enum],
        # the log names an entity's creation `create`, then the machine's actions
        "action": Annotated[str, OneOf(f"{camel(workflow.name)}HistoryAction", ["create", *workflow.actions])],
    }
    return type(
        f"{camel(workflow.name)}TransitionOut",
        (TransitionOut,),
        {"__annotations__": annotations, "__module__": __name__, "__doc__": f"One transition of a {workflow.name}."},
    )


def history_list(workflow: Workflow) -> Any:
    """`list[<Machine>TransitionOut]`, the `response_model` of an entity's `/history`."""
    return list[history_of(workflow)]  # type: ignore[misc]


class ReasonIn(Strict):
    reason: str | None = Field(default=None, max_length=500)


class Problem(BaseModel):
    """RFC 9457 problem details; module-specific members (e.g. `state`, `allowed_actions`,
    `required_fen`, `retry_after`) may be added."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None
