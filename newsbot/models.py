"""Plain data the parts of Newsbot pass to each other."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

SourceKind = Literal["reddit", "feed"]


@dataclasses.dataclass(frozen=True)
class Source:
    """A news source as the user named it.

    ``key`` is the canonical form (``r/python``, or the URL) used for caching and
    comparison; ``label`` is what the user wrote, used in replies.
    """

    kind: SourceKind
    key: str
    label: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "key": self.key, "label": self.label}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Source:
        return cls(kind=data["kind"], key=data["key"], label=data["label"])


@dataclasses.dataclass(frozen=True)
class Item:
    """One news item: a Reddit post or a feed entry.

    ``linked_url`` is the address a Reddit link post points to (the listing's ``url``),
    so that the post counts as the article it links to; None for everything else.
    """

    id: str
    title: str
    link: str
    published: float | None = None
    linked_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # Left out when unset, so an item without one is stored exactly as before and
        # a replica still running the code without the field reads it.
        if data["linked_url"] is None:
            del data["linked_url"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        # Fields this version does not know (written by a newer one) are ignored.
        return cls(
            **{
                field.name: data[field.name]
                for field in dataclasses.fields(cls)
                if field.name in data
            }
        )


@dataclasses.dataclass(frozen=True)
class SourceNews:
    """What one source gave: its items, or the reason it gave none."""

    source: Source
    items: tuple[Item, ...] = ()
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Delivery:
    """How a chat's messages go out: link previews, silence, and its digest's topic."""

    previews: bool = False
    silent: bool = False
    digest_thread: int | None = None
