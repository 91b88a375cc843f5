"""Task names and ids: the one vocabulary type, with one rule for a name it does not know.

A router trained with a task prior knows T task names (MMLU-Pro's categories, say). Each query's
task is turned into an id in [-1, T): its index in the vocabulary, or `UNKNOWN` (-1) for a task
the router has no row for (the task table's zero row: routed without the task prior).

The rule, the same for every caller (data pipeline, evaluation, replay, Python API, CLI, HTTP,
gateway, online service):
  * None and "" mean "task not known": `UNKNOWN`;
  * a name in the vocabulary: its index;
  * any other name is refused (`UnknownTaskError`, naming it and the vocabulary): a misspelt
    task must not silently route without its prior. Data whose labels may name tasks the
    training pool never had (a test split) says so by calling `label_ids`, which first maps
    such labels to None (`known`), then applies the same rule.

Naming, across the code base: `tasks` / `names` is the vocabulary (a tuple of names), `task` one
query's name (str or None), `task_ids` [B] int32 ids, and `n_tasks` (or `RouterSpec.tasks`, kept
for the artifact format) their count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

UNKNOWN = -1


class UnknownTaskError(ValueError):
    """A task name the vocabulary does not hold."""


@dataclasses.dataclass(frozen=True)
class TaskVocabulary:
    """The T task names of a router's task prior, in id order (() without one)."""

    names: tuple[str, ...] = ()

    def __post_init__(self):
        names = tuple(self.names)
        bad = [n for n in names if not isinstance(n, str) or not n]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct non-empty strings, got {names!r:.200}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    @classmethod
    def of_labels(cls, labels: Iterable[Any]) -> TaskVocabulary:
        """The sorted distinct names among data labels ("" is an unknown task, not a name)."""
        return cls(tuple(sorted({str(t) for t in labels} - {""})))

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def id(self, name: str | None) -> int:
        """One task's id (see the module docstring's rule)."""
        if name is None or name == "":
            return UNKNOWN
        index = self._index.get(name) if isinstance(name, str) else None
        if index is None:
            raise UnknownTaskError(
                f"unknown task {name!r:.80}; this router knows {list(self.names)} (null: a task "
                "it does not know, routed without the task prior)")
        return index

    def ids(self, names: Sequence[str | None]) -> np.ndarray:
        """[B] names (or None) -> [B] int32 ids; `UnknownTaskError` for a name not held."""
        return np.fromiter((self.id(n) for n in names), np.int32, len(names))

    def known(self, labels: Iterable[Any]) -> list[str | None]:
        """Data labels with every one the vocabulary does not hold (or "") as None."""
        return [t if t in self._index else None for t in (str(x) for x in labels)]

    def label_ids(self, labels: Any) -> np.ndarray:
        """[N] ids of data labels (an array or list; a scalar is one label): a label the
        vocabulary does not hold is `UNKNOWN`."""
        flat = np.asarray(labels).reshape(-1).tolist()
        return self.ids(self.known(flat))
