"""The language-conditioned tasks: which cube(s) the goal is at is only said in the instruction.

Three suites. ``reach`` (the embedded default): go above one named cube. ``between``: go above
the point midway between two named cubes, a relational goal that needs two cubes found and
combined, so a router has inputs that may need more depth than others beside the reach tasks
(issue #10). ``anywhere``: the reach tasks with the cubes anywhere in a 16 x 32 cm area instead
of three jittered slots, so the goal must be located in the image, not picked among three
places. A task is named everywhere by its name; a selection is a suite, ``all`` or names.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Annotated

from pydantic import AfterValidator

COLOURS = ("red", "green", "blue")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    colours: tuple[str, ...]  # the goal is above the centre of these cubes (one: that cube; two: midway)
    templates: tuple[str, ...]  # instruction phrasings; one is drawn per episode
    layout: str = "slots"  # where the cubes stand: "slots" (three jittered slots) or "anywhere"

    def instruction(self, variant: int) -> str:
        return self.templates[variant % len(self.templates)].format(first=self.colours[0], second=self.colours[-1])


REACH_TEMPLATES = ("reach the {first} cube", "move to the {first} cube", "go to the {first} block")
BETWEEN_TEMPLATES = ("reach between the {first} and the {second} cube", "move between the {first} and {second} cubes",
                     "go to the middle of the {first} and the {second} block")

SUITES: dict[str, tuple[TaskSpec, ...]] = {
    "reach": tuple(TaskSpec(f"reach_{c}", (c,), REACH_TEMPLATES) for c in COLOURS),
    "between": tuple(TaskSpec(f"between_{a}_{b}", (a, b), BETWEEN_TEMPLATES) for a, b in combinations(COLOURS, 2)),
    "anywhere": tuple(TaskSpec(f"anywhere_{c}", (c,), REACH_TEMPLATES, layout="anywhere") for c in COLOURS),
}
DEFAULT_SUITE = "reach"  # what the shipped checkpoints were trained on; a seed-drawn task comes from it
TASKS: dict[str, TaskSpec] = {spec.name: spec for suite in SUITES.values() for spec in suite}


def task_names(selection: str | list[str] | tuple[str, ...] = DEFAULT_SUITE) -> list[str]:
    """A suite (``reach``, ``between``), ``all`` (every task), task names (a list or one string,
    comma-separated) or suites mixed with names -> validated task names, each once, in order."""
    if selection in ("", None):
        selection = DEFAULT_SUITE
    items = [s.strip() for s in selection.split(",")] if isinstance(selection, str) else list(selection)
    names: list[str] = []
    for item in items:
        expanded = list(TASKS) if item == "all" else [t.name for t in SUITES[item]] if item in SUITES else [item]
        names += [n for n in expanded if n not in names]
    unknown = [n for n in names if n not in TASKS]
    if unknown or not names:
        raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}; suites: all, {', '.join(SUITES)}")
    return names


def _checked_selection(selection: str) -> str:
    task_names(selection)
    return selection


TaskSelection = Annotated[str, AfterValidator(_checked_selection)]  # a config field: checked when it is set
