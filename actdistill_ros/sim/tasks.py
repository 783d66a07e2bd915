"""The language-conditioned tasks: which cube to go to is only said in the instruction."""

from __future__ import annotations

from dataclasses import dataclass

COLOURS = ("red", "green", "blue")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    colour: str  # the target cube
    templates: tuple[str, ...]  # instruction phrasings; one is drawn per episode

    def instruction(self, variant: int) -> str:
        return self.templates[variant % len(self.templates)].format(colour=self.colour)


REACH_TEMPLATES = ("reach the {colour} cube", "move to the {colour} cube", "go to the {colour} block")

TASKS: dict[str, TaskSpec] = {
    f"reach_{colour}": TaskSpec(f"reach_{colour}", colour, REACH_TEMPLATES) for colour in COLOURS
}


def task_names(selection: str | list[str] | tuple[str, ...] = "all") -> list[str]:
    """'all', one name, or a list of names -> validated task names."""
    if selection in ("all", "", None):
        return list(TASKS)
    names = [selection] if isinstance(selection, str) else list(selection)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    return names
