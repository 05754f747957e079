"""The one Markdown table renderer of the reproduction document: a header row, its rule, and one row per entry."""
from __future__ import annotations

from collections.abc import Iterable, Sequence


def row(cells: Iterable[object]) -> str:
    """One table row: `| a | b |` (an empty cell is `| |`)."""
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"


def markdown_table(header: Sequence[object], rows: Iterable[Iterable[object]]) -> list[str]:
    """The table's lines: the header, the `|---|` rule under each column, then each row."""
    return [row(header), "|---" * len(header) + "|", *(row(r) for r in rows)]
