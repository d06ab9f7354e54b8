"""The one transitive grouping of the data code: items linked in pairs, joined into groups (union-find).

Used wherever "the same image" is transitive: the validation split's groups (same name, same bytes, near-duplicates)
and the near-duplicate groups of check-data and the report.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["linked_groups"]


def linked_groups(count: int, links: Iterable[tuple[int, int]]) -> list[list[int]]:
    """The groups of ``range(count)`` that ``links`` join, transitively (an item without a link is a group of one).

    Args:
        count: how many items.
        links: pairs of item indices that belong together.

    Returns:
        Groups of indices, each ascending, ordered by their smallest index.
    """
    parent = list(range(count))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in links:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(find(i), []).append(i)
    return [groups[root] for root in sorted(groups)]
