"""One strict comparison of a checkpoint's tensors against a module's: every loader reports the same way."""

from __future__ import annotations

from collections.abc import Mapping


def state_dict_mismatch(expected: Mapping, given: Mapping, limit: int = 12) -> str | None:
    """None when `given` has exactly `expected`'s keys and shapes; otherwise one message listing missing
    keys, unexpected keys and shape mismatches (first `limit` of each, then a count)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
                        for k in set(expected) & set(given) if tuple(given[k].shape) != tuple(expected[k].shape))
    if not (missing or unexpected or mismatched):
        return None

    def show(items):
        return ", ".join(items[:limit]) + (f" ... (+{len(items) - limit} more)" if len(items) > limit else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatches: {show(mismatched)}")
    return "; ".join(parts)
