"""Field-level differences between two (redacted) projections, for the record's ``changes``.

Path syntax, one segment per step from the top of the projection:

- ``.key`` for a key of letters, digits, ``_`` and ``-`` that starts with a letter or ``_``
  (no leading dot on the first segment): ``spec.template.spec.dnsPolicy``;
- ``["key"]`` for any other key, as a JSON string (so ``.``, ``/``, ``"`` and ``]`` inside
  stay unambiguous): ``metadata.annotations["example.com/team"]``;
- ``[name=web]`` for an item of a list whose items are all mappings with distinct string
  ``name`` values, matched by name rather than position (``containers``, ``env``,
  ``volumes``, ...): ``spec.template.spec.containers[name=web].env[name=DB_HOST].value``;
  a name outside letters, digits, ``_``, ``.`` and ``-`` is written as a JSON string:
  ``[name="a b"]``;
- ``[0]`` for an item of any other list of mappings, matched by position: ``rules[0].verbs``.

A list of scalars (``args``, ``verbs``) is one value, compared and reported whole. Mappings
are followed down to their fields, also when one side lacks the mapping: a missing mapping
counts as an empty one (as it does for the apiserver), so the first annotation shows as
``metadata.annotations["example.com/team"]``, not as a whole new ``annotations``. A field
present on one side only is reported at its own path, with ``old`` None when it was added
and ``new`` None when it was removed; a list item added or removed is reported whole.
``None`` for a whole projection counts as an object with no fields. Changes come in a
deterministic order: keys sorted, list items in order (matched-by-name items in the old
list's order, then the newly added ones).

Neighbours: :mod:`kubeledger.core.projection` and :mod:`kubeledger.core.redaction` prepare what is
compared here; values pass through unchanged apart from size capping, so redact first.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from kubeledger.core import model

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def diff(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    *,
    max_changes: int = 64,
    max_value_chars: int = 2048,
) -> tuple[list[model.FieldChange], bool]:
    """The changed fields from ``old`` to ``new``, and whether the list was cut short.

    At most ``max_changes`` changes are returned (the first ones in path order). A value
    whose JSON is longer than ``max_value_chars`` characters is replaced by
    ``{"truncated": true, "sha256": <hex of its canonical JSON>, "chars": <length>}``.
    """
    found = list(itertools.islice(_changes("", old, new), max_changes + 1))
    changes = [
        model.FieldChange(
            path=path,
            old=_capped(before, max_value_chars),
            new=_capped(after, max_value_chars),
        )
        for path, before, after in found[:max_changes]
    ]
    return changes, len(found) > max_changes


def _changes(path: str, old: Any, new: Any) -> Iterator[tuple[str, Any, Any]]:
    # Equal subtrees are skipped whole: most of a projection is unchanged on most events.
    if old == new:
        return
    old_fields, new_fields = _fields(old), _fields(new)
    if old_fields is not None and new_fields is not None:
        for key in sorted(old_fields.keys() | new_fields.keys()):
            yield from _changes(key_path(path, key), old_fields.get(key), new_fields.get(key))
    elif isinstance(old, list) and isinstance(new, list):
        yield from _list_changes(path, old, new)
    else:
        yield path, old, new


def _fields(value: Any) -> Mapping[str, Any] | None:
    """The fields of a mapping, none of a missing value; None for anything else."""
    if value is None:
        return {}
    return value if isinstance(value, Mapping) else None


def _list_changes(path: str, old: list[Any], new: list[Any]) -> Iterator[tuple[str, Any, Any]]:
    old_by_name, new_by_name = _by_name(old), _by_name(new)
    if old_by_name is not None and new_by_name is not None:
        # Old order first, then the added items: dict keys keep insertion order.
        for name in {**old_by_name, **new_by_name}:
            yield from _item_changes(
                _name_path(path, name), old_by_name.get(name), new_by_name.get(name)
            )
    elif _all_mappings(old) and _all_mappings(new):
        for index in range(max(len(old), len(new))):
            yield from _item_changes(f"{path}[{index}]", _item(old, index), _item(new, index))
    else:
        yield path, old, new


def _item_changes(path: str, old: Any, new: Any) -> Iterator[tuple[str, Any, Any]]:
    """Changes of a list item: an added or removed item is one change, whole."""
    if old is None or new is None:
        yield path, old, new
    else:
        yield from _changes(path, old, new)


def _by_name(items: list[Any]) -> dict[str, Any] | None:
    """The items by their ``name``, or None unless every item is a mapping with its own."""
    by_name: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Mapping):
            return None
        name = item.get("name")
        if not isinstance(name, str) or name in by_name:
            return None
        by_name[name] = item
    return by_name


def _all_mappings(items: list[Any]) -> bool:
    return all(isinstance(item, Mapping) for item in items)


def _item(items: list[Any], index: int) -> Any:
    return items[index] if index < len(items) else None


def key_path(path: str, key: str) -> str:
    """``path`` followed by the mapping key ``key``, in the syntax above."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _name_path(path: str, name: str) -> str:
    written = name if _PLAIN_NAME.fullmatch(name) else json.dumps(name)
    return f"{path}[name={written}]"


def _capped(value: Any, max_chars: int) -> Any:
    """``value``, or a small marker standing for it when its JSON is too long."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(text) <= max_chars:
        return value
    digest = hashlib.sha256(text.encode()).hexdigest()
    return {"truncated": True, "sha256": digest, "chars": len(text)}
