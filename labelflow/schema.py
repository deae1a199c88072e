"""The class schema: the names (and optional descriptions) of a task's classes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labelflow.conventions import MAX_CLASSES
from labelflow.errors import DataError


@dataclass(frozen=True)
class ClassSchema:
    """The classes of a task, in index order: class ``i`` is ``names[i]``.

    Parameters
    ----------
    names
        Class names, ``k ≥ 2`` of them, unique.
    descriptions
        One sentence per class, or empty. Zero-shot and prompt LFs read them.

    Examples
    --------
    >>> s = ClassSchema.from_spec(["HAM", "SPAM"])
    >>> s.k, s.index("SPAM")
    (2, 1)
    """

    names: tuple[str, ...]
    descriptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "descriptions", tuple(self.descriptions))
        if not 2 <= len(names) <= MAX_CLASSES:
            raise DataError(f"a class schema needs 2 to {MAX_CLASSES} classes; got {len(names)}: {list(names)}")
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad:
            raise DataError(f"class names must be non-empty strings; got {bad!r}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DataError(f"class names must be unique; {dupes} appear more than once")
        if self.descriptions and len(self.descriptions) != len(names):
            raise DataError(
                f"descriptions must be empty or one per class ({len(names)}); got {len(self.descriptions)}"
            )

    @property
    def k(self) -> int:
        """Number of classes."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Class index of ``name``; raises :class:`DataError` naming the known classes."""
        try:
            return self.names.index(name)
        except ValueError:
            raise DataError(f"unknown class {name!r}; the schema's classes are {list(self.names)}") from None

    @classmethod
    def from_spec(cls, spec: "ClassSchema | Sequence[str] | Mapping[str, str]") -> "ClassSchema":
        """Build a schema from a list of names or a ``{name: description}`` mapping."""
        if isinstance(spec, ClassSchema):
            return spec
        if isinstance(spec, str):
            raise DataError(f"classes must be a list of names or a name→description mapping; got the string {spec!r}")
        if isinstance(spec, Mapping):
            return cls(tuple(spec), tuple(str(d) for d in spec.values()))
        return cls(tuple(spec))

    def to_dict(self) -> list[dict[str, str]]:
        """JSON-ready form: ``[{"name": ..., "description": ...}, ...]``."""
        descriptions = self.descriptions or ("",) * self.k
        return [{"name": n, "description": d} for n, d in zip(self.names, descriptions)]

    @classmethod
    def from_dict(cls, items: Sequence[Mapping[str, str]]) -> "ClassSchema":
        """Inverse of :meth:`to_dict`."""
        names = tuple(item["name"] for item in items)
        descriptions = tuple(item.get("description", "") for item in items)
        return cls(names, descriptions if any(descriptions) else ())
