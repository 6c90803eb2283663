"""One story once: items of several sources that are the same article, shown once.

The merge runs on news already fetched, before it is rendered: each article stays in the
block of the first source that has it, carrying the labels of the other sources it also
came from (rendered as ``also: r/python, example.org``), and leaves their blocks. Items
are the same article when their ``article_key`` is (see ``canonical.py``); a title is
never compared, so two articles that share a headline stay two. Pure functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Iterable, Sequence

from newsbot.canonical import article_key, is_web_url
from newsbot.models import Item, Source, SourceNews


@dataclasses.dataclass(frozen=True)
class Entry:
    """One article in a block: the item shown, its key, and the other sources that had it.

    ``key`` is what counts as the article when marking it seen: its canonical URL, or,
    for an item with no web address, its source and id (such items never merge).
    """

    item: Item
    key: str
    also: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class MergedNews:
    """One source's block after merging: its entries, or the reason it gave none.

    ``shown_above`` counts its items left out because an earlier block shows them.
    """

    source: Source
    entries: tuple[Entry, ...] = ()
    error: str | None = None
    shown_above: int = 0

    @property
    def news(self) -> SourceNews:
        """The block as plain news, for code that renders items without their ``also``."""
        return SourceNews(self.source, tuple(entry.item for entry in self.entries), self.error)


def item_key(source: Source, item: Item) -> str:
    """The key an item counts as: its article's canonical URL, else its source and id."""
    key = article_key(item.link, item.linked_url)
    return key if is_web_url(key) else f"{source.key} {item.id}"


def merge_news(blocks: Sequence[SourceNews]) -> list[MergedNews]:
    """Show each article once, in the first block that has it, naming the other sources."""
    first: dict[str, tuple[int, int]] = {}  # key -> (block, entry) where it is shown
    entries: list[list[Entry]] = []
    above: list[int] = []
    for block_index, block in enumerate(blocks):
        kept: list[Entry] = []
        above.append(0)
        for item in block.items:
            key = item_key(block.source, item)
            if key not in first:
                first[key] = (block_index, len(kept))
                kept.append(Entry(item, key))
                continue
            shown_block, shown_entry = first[key]
            if shown_block != block_index:
                above[block_index] += 1
            target = kept if shown_block == block_index else entries[shown_block]
            shown = target[shown_entry]
            target[shown_entry] = dataclasses.replace(
                shown, also=_with(shown.also, block.source.label, blocks[shown_block].source.label)
            )
        entries.append(kept)
    return [
        MergedNews(block.source, tuple(kept), block.error, count)
        for block, kept, count in zip(blocks, entries, above, strict=False)
    ]


def drop_seen(blocks: Sequence[MergedNews], seen: Container[str]) -> list[MergedNews]:
    """The blocks without the articles whose keys are in ``seen`` (sent from any source)."""
    return [
        dataclasses.replace(
            block, entries=tuple(entry for entry in block.entries if entry.key not in seen)
        )
        for block in blocks
    ]


def _with(labels: Iterable[str], label: str, own: str) -> tuple[str, ...]:
    """Labels with one more, in order, never twice and never the block's own."""
    names = tuple(labels)
    return names if label == own or label in names else (*names, label)
