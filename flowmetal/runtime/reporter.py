"""What ``flowmetal worker`` shows of the tasks it runs: their output, line by line,
each line prefixed with its task's id, and one line for each task that ends.

Output is shown after the commit that made it (``Round.steps`` beside
``Round.committed``), so a line is shown once for each time it was committed.  A line a
step left unfinished waits for the rest of it, from a later step of the same task or
the task's end, so the lines of tasks running side by side never mix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..codec import CodecError
from ..report import error_summary
from .records import RecordError, Status, TaskRecord, result_value

VALUE_CHARS = 200  # characters of a result an end line shows


class Reporter:
    """Turns a worker's rounds (``Worker.on_round``) into lines written by ``write``."""

    def __init__(self, store: Any, write: Callable[[str], None]):
        self.store = store
        self.write = write
        self.partial: dict[str, str] = {}  # task id -> its unfinished last line

    def round(self, result: Any) -> None:
        """Show what the round committed: output, then the tasks that ended."""
        out: list[str] = []
        for step, ok in zip(result.steps, result.committed):
            if ok and step.output:
                out += self._lines(step.task_id, step.output)
        if result.ended:
            with self.store.view() as view:
                records = [view.task(task_id) for task_id in result.ended]
            for rec in records:
                if rec is not None and rec.status != Status.MOVED:
                    rest = self.partial.pop(rec.id, "")
                    if rest:
                        out.append(f"[{rec.id}] {rest}\n")
                    out.append(end_line(rec))
        if out:
            self.write("".join(out))

    def _lines(self, task_id: str, text: str) -> list[str]:
        *lines, rest = (self.partial.pop(task_id, "") + text).split("\n")
        if rest:
            self.partial[task_id] = rest
        return [f"[{task_id}] {line}\n" for line in lines]


def end_line(rec: TaskRecord) -> str:
    """``[ID] NAME done: VALUE`` (or ``failed: MESSAGE (:type) at FILE:LINE:COL``,
    ``cancelled``) for a finished task."""
    from .inspect import value_text

    head = f"[{rec.id}] {rec.name} {rec.status}"
    try:
        value = result_value(rec)
    except (CodecError, RecordError) as exc:
        return f"{head} (its result cannot be read: {exc})\n"
    if rec.status == Status.DONE:
        return f"{head}: {value_text(value, VALUE_CHARS)}\n"
    return f"{head}: {error_summary(value)}\n"
