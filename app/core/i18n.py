"""Messages in the caller's language (client-contract.md, "Language, time, parameters").

Texts are English templates with named parameters, `msg("{month} is already published",
month=month)`, translated through gettext catalogues (Babel) when the answer is written, never
by branches in code. `pybabel extract` (babel.cfg, `make messages`) finds them: the first
argument of `msg`, `N_` and of the DomainError classes, and the title of `problem_code`.
Catalogues: app/locale/<locale>/LC_MESSAGES/messages.po, read once at first use."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DEFAULT_LANGUAGE = "en"
# what Content-Language says, per catalogue; `en` is the source language (no catalogue)
LANGUAGES = {"en": "en", "zh_CN": "zh-CN"}
# the language tags a client may ask for, and the catalogue each one means
_ACCEPTED = {"zh-CN": "zh_CN", "zh-Hans": "zh_CN", "zh-Hans-CN": "zh_CN", "zh-SG": "zh_CN", "zh": "zh_CN", "en": "en"}
_ACCEPTED_LOWER = {tag.lower(): language for tag, language in _ACCEPTED.items()}


class Message:
    """A translatable text: an English template and its named parameters. A parameter that is
    itself a Message (a `term`) is translated too."""

    __slots__ = ("params", "template")

    def __init__(self, template: str, /, **params: Any) -> None:
        self.template = template
        self.params = params

    def render(self, language: str = DEFAULT_LANGUAGE) -> str:
        text = translate(self.template, language)
        if not self.params:
            return text
        values = {k: _value(v, language) for k, v in self.params.items()}
        try:
            return text.format(**values)
        except (KeyError, IndexError, ValueError):  # a broken translation must not turn into a 500
            return self.template.format(**values)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"msg({self.template!r}, **{self.params!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return str(self) == other
        return isinstance(other, Message) and (self.template, self.params) == (other.template, other.params)

    def __hash__(self) -> int:
        return hash(self.template)


# how a list parameter's items are joined, per language
_LIST_SEPARATOR = {DEFAULT_LANGUAGE: ", ", "zh_CN": "、"}


def _value(value: Any, language: str) -> Any:
    if isinstance(value, Message):
        return value.render(language)
    if isinstance(value, (list, tuple)):
        return _LIST_SEPARATOR.get(language, ", ").join(str(_value(v, language)) for v in value)
    return value


def msg(template: str, /, **params: Any) -> Message:
    """A message template with named parameters, extracted into the catalogues."""
    return Message(template, **params)


def N_(text: str) -> str:
    """Marks a text for extraction where it is translated later (a validator's message)."""
    return text


# Words put into messages as parameters (roles, entity names), translated with them
_TERMS = frozenset(
    (
        N_("merchant"),
        N_("creator"),
        N_("agency"),
        N_("platform"),
        N_("operator"),
        N_("provider"),
        N_("task_order"),
        N_("top_up"),
        N_("dispute"),
        N_("campaign"),
        N_("campaign_signup"),
        N_("creator_binding"),
        N_("shop_binding"),
        N_("check_in"),
        N_("cooperation"),
        N_("provider_contract"),
        N_("voucher"),
        N_("redemption"),
        N_("incentive_statement"),
        N_("binding"),
        N_("shop"),
        N_("conversations"),
        N_("contact_views"),
        N_("phone"),
        N_("wechat"),
        N_("dedicated"),
        N_("shared"),
    )
)


def term(word: str) -> Message | str:
    """A role or entity name inside a message: translated when it is a known word."""
    return Message(word) if word in _TERMS else word


@cache
def catalogue(language: str) -> Mapping[str, str]:
    """msgid → msgstr of one language's catalogue (empty and fuzzy entries left out)."""
    if language == DEFAULT_LANGUAGE:
        return {}
    from babel.messages.pofile import read_po

    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        parsed = read_po(handle, locale=language)
    return {
        m.id: m.string
        for m in parsed
        if isinstance(m.id, str) and m.id and isinstance(m.string, str) and m.string and not m.fuzzy
    }


def translate(text: str, language: str = DEFAULT_LANGUAGE) -> str:
    return catalogue(language).get(text, text) if language != DEFAULT_LANGUAGE else text


def render(value: Any, language: str = DEFAULT_LANGUAGE) -> Any:
    """A value with every Message in it (also inside lists and dicts) rendered."""
    if isinstance(value, Message):
        return value.render(language)
    if isinstance(value, list):
        return [render(v, language) for v in value]
    if isinstance(value, dict):
        return {k: render(v, language) for k, v in value.items()}
    return value


@lru_cache(maxsize=512)
def negotiate(accept_language: str | None) -> str:
    """The catalogue for an `Accept-Language` header (RFC 9110 q-values), `en` by default."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    from babel.core import negotiate_locale

    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, position, tag.strip()))
    preferred = [tag for _, _, tag in sorted(ranked)]
    if any(tag == "*" for tag in preferred):
        preferred = [tag for tag in preferred if tag != "*"] + [DEFAULT_LANGUAGE]
    chosen = negotiate_locale(preferred, list(_ACCEPTED), sep="-", aliases={})
    # negotiate_locale answers the tag as the client spelt it (`zh-cn`): look it up in any case
    return _ACCEPTED_LOWER.get(chosen.lower(), DEFAULT_LANGUAGE) if chosen else DEFAULT_LANGUAGE


def content_language(language: str) -> str:
    return LANGUAGES.get(language, DEFAULT_LANGUAGE)
