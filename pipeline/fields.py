"""The field types every model that reads user input is built from (request bodies, film specs).

The text types (`Name`, `Line`, `Paragraph`, `Passage`, `Document`) are the standard
bounds in characters (a field narrows one with `Field(max_length=...)`; `words_at_most` bounds
words). `StrictInput`, the base of every request body and of the film spec, refuses a NUL
character in any of its fields, whatever the content type the text came with, a string or a
boolean where a number is expected (`{"credits": "100"}`, `{"credits": true}`) and anything but
a boolean for a boolean.
The standing adversarial suite (tests/security) checks every string of every request body in the
OpenAPI document is bounded, and probes every number with a string and a boolean.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, StringConstraints, ValidationInfo, field_validator

Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
"""A name: of a character, a voice, a plan, a playlist."""
Line = Annotated[str, StringConstraints(max_length=255)]
"""One line: a title, a caption, a file name, an email address, a reason."""
Paragraph = Annotated[str, StringConstraints(max_length=2000)]
"""A few sentences: a prompt, a description."""
Passage = Annotated[str, StringConstraints(max_length=4000)]
"""What one scene says: 400 words of narration fit."""
Document = Annotated[str, StringConstraints(max_length=30_000)]
"""A whole story: 3,000 words fit."""


def words_at_most(limit: int) -> AfterValidator:
    """Refuses a text of more than `limit` words (on a bounded text type)."""

    def check(text: str) -> str:
        words = len(text.split())
        if words > limit:
            raise ValueError(f"the text has {words} words; at most {limit} are allowed")
        return text

    return AfterValidator(check)


class StrictInput(BaseModel):
    """A model whose numbers and booleans are taken only as JSON numbers and booleans."""

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        if _has_nul(value):
            raise ValueError("NUL characters are not accepted")
        if info.field_name is None:
            return value
        kinds = _scalar_kinds(cls.model_fields[info.field_name].annotation)
        if not kinds or value is None:
            return value
        if isinstance(value, bool):
            if bool not in kinds:
                raise ValueError("a number is expected, not a boolean")
        elif isinstance(value, int | float):
            if not kinds & {int, float}:
                raise ValueError("a boolean is expected, not a number")
        elif isinstance(value, str):
            expected = "a boolean" if kinds == {bool} else "a number"
            raise ValueError(f"{expected} is expected, not a string")
        return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False


def _scalar_kinds(annotation: Any) -> set[type]:
    """{int, float, bool} members of a field's type when it is only those (and None), else {}."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalar_kinds(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        found = [_scalar_kinds(member) for member in members]
        return set().union(*found) if all(found) else set()
    return {annotation} if annotation in (int, float, bool) else set()
