"""The task inspector: a read-only view of one task of a store.

It shows the task's status and its committed continuation as frames, innermost first,
each with its procedure, the source line with the awaited form highlighted, and its
local variables (``runtime/inspect.py`` reads them from the stored state).  It moves
through the frames, shows the inbox, the pending request and the event log, follows a
running task as its steps commit, and, for a task run in trace mode, moves through its
recorded steps.

It only ever reads the store (snapshot transactions), so it never changes the task and
works while a worker in another process runs it.
"""

from __future__ import annotations

import time
from typing import Any

from ..codec import CodecError
from ..interpreter import Session
from ..machine import Machine
from ..report import format_error
from ..runtime import inspect
from ..runtime.code import state_base
from ..runtime.records import TaskError, decode_data, result_value
from ..values import sym
from .console import Console
from .spans import show_form

WATCH_POLL = 0.05
WATCH_SECONDS = 60.0
FRAME_VALUE_CHARS = 100


def when(at: float | None) -> str:
    """A time of day to the millisecond (with the date when it is not today)."""
    if at is None:
        return "?"
    today = time.localtime()[:3]
    stamp = time.localtime(at)
    text = time.strftime("%H:%M:%S" if stamp[:3] == today else "%Y-%m-%d %H:%M:%S", stamp)
    return f"{text}.{int(at * 1000) % 1000:03d}"


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def find_task(store: Any, text: str) -> str:
    """The id of the task named by ``text``: its id, or a prefix or suffix of it that
    names one task only (TaskError otherwise)."""
    with store.view() as view:
        if view.task(text) is not None or text in view.unreadable:
            return text
        ids = [rec.id for rec in view.tasks(limit=1 << 62)]
    found = [i for i in ids if i.startswith(text)] or [i for i in ids if i.endswith(text)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TaskError(f"no task {text}")
    raise TaskError(f"{text} names {len(found)} tasks: give more of the id")


class Inspector:
    """A read-only view of task ``task_id`` of ``store``, shown on ``console``."""

    def __init__(self, store: Any, task_id: str, console: Console):
        self.store = store
        self.id = task_id
        self.console = console
        self.rec: Any = None
        self.machine: Machine | None = None
        self.state: bytes | None = None  # the encoded state in view
        self.frames: list[dict] = []
        self.hidden_frames = 0
        self.index = 0
        self.position: int | None = None  # a recorded step being viewed; None: the latest
        self.history: list[int] = []      # log sequence numbers of the recorded steps
        self.problem: str | None = None
        self.load()

    # -- reading the store ----------------------------------------------------------

    def load(self) -> None:
        """Read the task again: its record, its trace history, and the state viewed."""
        with self.store.view() as txn:
            rec = txn.task(self.id)
            if rec is None:
                problem = txn.unreadable.get(self.id)
                raise TaskError(f"task {self.id}: {problem}" if problem else
                                f"no task {self.id}")
            self.rec = rec
            self.history = [seq for seq, e in txn.log(self.id)
                            if e.kind == "step"] if rec.trace else []
            if self.position is not None and self.position >= len(self.history):
                self.position = None
            if self.position is not None:
                state = self._step_state(txn, self.history[self.position])
            elif not rec.finished:
                state = txn.continuation(self.id)
            else:
                state = None
            self.machine, self.problem = None, None
            self.state = bytes(state) if state is not None else None
            if state is not None:
                try:
                    self.machine = inspect.load_machine(txn, rec, bytes(state))
                except (TaskError, CodecError) as exc:
                    self.problem = str(exc)
        frames = inspect.frames(self.machine) if self.machine is not None else []
        self.hidden_frames = sum(f["count"] for f in frames if f["kind"] == "more")
        self.frames = [f for f in frames if f["kind"] != "more"]
        self.index = min(self.index, max(len(self.frames) - 1, 0))

    def _step_state(self, txn: Any, seq: int) -> bytes | None:
        for _, event in txn.log(self.id, seq - 1):
            return event.details.get("state")
        return None

    # -- what is shown --------------------------------------------------------------

    def state_text(self, rec: Any = None) -> str:
        """The task's status in words: "running", "waiting: sleep until ...", ..."""
        rec = rec or self.rec
        text = inspect.state_text(inspect.task_summary(rec, time.time()))
        if rec.cancel and rec.status != "cancelled":
            text += " (cancel requested)"
        return text

    def show(self) -> None:
        """The task's summary, then the frame in view."""
        rec, c = self.rec, self.console
        c.line(f"task {rec.id} ({rec.name})", "heading")
        c.line(f"  status   {self.state_text()}")
        c.line(f"  steps    {rec.steps} ({rec.reductions} reductions), "
               f"created {when(rec.created)}, updated {when(rec.updated)}")
        if rec.status == "done":
            c.line(f"  result   {inspect.value_text(result_value(rec))}")
        elif rec.finished and rec.error is not None:
            first, *rest = format_error(result_value(rec)).splitlines()
            c.line(f"  error    {first}", "error")
            for line in rest:
                c.line(f"           {line}", "error")
        if rec.trace:
            c.line(f"  trace    {len(self.history)} recorded steps: ,back and ,step move "
                   "through them", "note")
        self.show_view()

    def show_view(self) -> None:
        """Which state is in view, and its current frame."""
        c = self.console
        if self.position is not None:
            with self.store.view() as txn:
                event = next((e for _, e in txn.log(self.id, self.history[
                    self.position] - 1)), None)
            details = event.details if event is not None else {}
            c.line(f"viewing recorded step {self.position + 1} of {len(self.history)} "
                   f"({details.get('reductions', '?')} reductions, committed "
                   f"{when(event.at if event else None)}); ,step goes on, ,back goes back",
                   "note")
        if self.problem:
            c.line(f"the state cannot be read: {self.problem}", "error")
        elif self.machine is None:
            c.line("no continuation: the task has finished", "note")
            return
        m = self.machine
        if not self.frames:
            if m.status == "running" and m.node is None:
                c.line(f"no frames: returning {inspect.value_text(m.val, 200)} to the "
                       "top level", "note")
            elif self.rec.steps == 0 and self.position is None:
                c.line("no frames: the task has not run a step yet", "note")
            else:
                c.line("no frames: at the program's top level", "note")
            return
        if m.status == "waiting" and m.request is not None:
            c.line(f"waiting on {inspect.value_text(m.request, 200)}")
        elif m.status == "running" and m.node is None:
            c.line(f"returning {inspect.value_text(m.val, 200)} to the innermost frame")
        more = f" (+{self.hidden_frames} not shown)" if self.hidden_frames else ""
        c.line(f"{len(self.frames)} frame{'' if len(self.frames) == 1 else 's'}{more}, "
               "innermost first: ,bt lists them, "
               ",up ,down ,frame N move", "note")
        self.show_frame()

    def show_frame(self, full: bool = False) -> None:
        """The frame in view: procedure, position, source line and locals."""
        c = self.console
        f = self.frames[self.index]
        where = f" at {f['file']}:{f['line']}:{f['col']}" if f["file"] else ""
        c.line(f"#{self.index} {f['proc']}{where}", "heading")
        if f["source"] is not None:
            show_form(c, f"  {f['line']:>4} | ", f["source"], f["col"])
        for b in f["bindings"]:
            value = b["value"] if full else cut(b["value"], FRAME_VALUE_CHARS)
            c.line(f"  {b['name']} = {value}")
        if not f["bindings"]:
            c.line("  (no local variables)", "note")

    def backtrace(self) -> None:
        """Every frame, one line each; the one in view is marked."""
        if not self.frames:
            self.show_view()
            return
        for i, f in enumerate(self.frames):
            where = f" at {f['file']}:{f['line']}:{f['col']}" if f["file"] else ""
            mark = ">" if i == self.index else " "
            self.console.line(f"{mark} #{i} {f['proc']}{where}")
        if self.hidden_frames:
            self.console.line(f"  ... {self.hidden_frames} more frames", "note")

    # -- moving ---------------------------------------------------------------------

    def move(self, index: int) -> None:
        """View frame ``index`` (0 is the innermost)."""
        if not self.frames:
            self.show_view()
            return
        if not 0 <= index < len(self.frames):
            self.console.line(f"no frame #{index}: the frames are #0 to "
                              f"#{len(self.frames) - 1}", "error")
            return
        self.index = index
        self.show_frame()

    def up(self, n: int = 1) -> None:
        """View the frame ``n`` further out (the caller's)."""
        if self.frames and self.index + n >= len(self.frames):
            self.console.line("already at the outermost frame", "note")
            return
        self.move(self.index + n)

    def down(self, n: int = 1) -> None:
        """View the frame ``n`` further in."""
        if self.frames and self.index - n < 0:
            self.console.line("already at the innermost frame", "note")
            return
        self.move(self.index - n)

    def locals(self) -> None:
        """The local variables of the frame in view, values in full."""
        if not self.frames:
            self.show_view()
            return
        self.show_frame(full=True)

    def frame_session(self) -> Session | None:
        """A session in which code sees the frame in view: its local variables over the
        task's globals.  It holds a copy (the state in view decoded afresh), so what runs
        in it changes neither the task nor what the inspector shows of it.  None (and
        why, shown) when there is no state to see."""
        if self.machine is None:
            self.show_view()
            return None
        with self.store.view() as view:
            copy = inspect.load_machine(view, self.rec, self.state)
            session = Session(state_base(view, self.state))
        session.globals.update(copy.own)
        if self.frames:
            session.globals.update((sym(name), value) for name, value in
                                   inspect.frame_locals(copy, self.index).items())
        return session

    # -- the rest of the task's state -----------------------------------------------

    def inbox(self) -> None:
        """The messages queued for the task, oldest first."""
        with self.store.view() as view:
            items = view.inbox(self.id)
        if not items:
            self.console.line("inbox: empty", "note")
            return
        self.console.line(f"inbox: {len(items)} messages, oldest first")
        for seq, message in items:
            sender = message.sender or "outside"
            value = inspect.value_text(decode_data(message.value), 200)
            self.console.line(f"  #{seq} from {sender} at {when(message.at)}: {value}")

    def outbox(self) -> None:
        """What the task has asked of the world and waits for.  (The store keeps no
        outbox of its own yet: requests are answered in the step that makes them, or
        the task waits on them.)"""
        c = self.console
        c.line("the store keeps no outbox yet: a request is handled in the commit of the "
               "step that made it; this is what the task waits on", "note")
        waiting = self.rec.waiting
        if self.rec.status != "waiting" or waiting is None:
            c.line(f"  nothing pending: the task is {self.state_text()}")
            return
        until = f", until {when(waiting.until)}" if waiting.until else ""
        c.line(f"  request #{waiting.request} ({waiting.op}{until})")
        if self.machine is not None and self.machine.request is not None:
            c.line(f"  {inspect.value_text(self.machine.request, 500)}")

    def log(self) -> None:
        """The task's event log."""
        show_log(self.store, self.id, self.console)

    # -- following the task ---------------------------------------------------------

    def watch(self, seconds: float = WATCH_SECONDS, output: bool = True) -> None:
        """Follow the task as its steps commit: a line per step (its status and where
        it stands) and, with ``output``, its output, until it finishes, ``seconds`` pass
        or Ctrl-C.  (Without ``output`` when something else shows it already, as the
        REPL's worker does for the tasks it started.)"""
        c = self.console
        with self.store.view() as view:
            rec = view.task(self.id)
            seen_output = max((seq for seq, _ in view.output(self.id)), default=0)
        c.line(f"watching task {self.id} (Ctrl-C stops; at most {seconds:g} s)", "note")
        steps, status = rec.steps, rec.status
        stop_at = time.monotonic() + seconds
        try:
            while not rec.finished:
                if time.monotonic() >= stop_at:
                    c.line(f"stopped watching after {seconds:g} s", "note")
                    break
                time.sleep(WATCH_POLL)
                with self.store.view() as view:
                    rec = view.task(self.id)
                    new_output = list(view.output(self.id, seen_output))
                    changed = rec.steps != steps or rec.status != status
                    state = view.continuation(self.id) if changed and \
                        not rec.finished else None
                    where = _innermost(view, rec, state)
                for seq, text in new_output:
                    seen_output = seq
                    for line in text.splitlines() if output else ():
                        c.line(f"  | {line}")
                if changed:
                    steps, status = rec.steps, rec.status
                    c.line(f"{when(rec.updated)} step {steps}: {self.state_text(rec)}"
                           f"{where}")
        except KeyboardInterrupt:
            c.line("stopped watching", "note")
        if rec.finished:
            c.line(f"the task finished: {rec.status}", "heading")
        self.position = None
        self.index = 0
        self.load()
        if rec.finished:
            self.show()

    def step(self) -> None:
        """View the next recorded step (trace mode)."""
        if not self._traced():
            return
        if self.position is None:
            self.console.line("this is the latest committed step (,watch follows the task)",
                              "note")
            return
        self.load()
        if self.position is None or self.position + 1 >= len(self.history):
            self.position = None
        else:
            self.position += 1
        self.index = 0
        self.load()
        if self.position is None:
            self.console.line("the latest committed step", "note")
        self.show_view()

    def back(self) -> None:
        """View the recorded step before the one in view (trace mode)."""
        if not self._traced():
            return
        self.load()
        if self.position is None:
            target = len(self.history) - 1
            with self.store.view() as txn:
                current = txn.continuation(self.id) if not self.rec.finished else None
                last = self._step_state(txn, self.history[target]) if target >= 0 else None
            if current is not None and last is not None and bytes(current) == bytes(last):
                target -= 1
        else:
            target = self.position - 1
        if target < 0:
            self.console.line("this is the first recorded step" if self.history else
                              "no step recorded yet", "note")
            return
        self.position = target
        self.index = 0
        self.load()
        self.show_view()

    def _traced(self) -> bool:
        if self.rec.trace:
            return True
        self.console.line(f"task {self.id} does not run in trace mode, so only its latest "
                          "committed step is kept (start a task with --trace to record "
                          "every step)", "note")
        return False


def _innermost(view: Any, rec: Any, state: bytes | None) -> str:
    """" at PROC (FILE:LINE:COL)" for the innermost frame of an encoded state."""
    if state is None:
        return ""
    try:
        m = inspect.load_machine(view, rec, bytes(state))
    except (CodecError, TaskError):
        return ""
    frames = [f for f in inspect.frames(m, 1) if f["kind"] != "more"]
    if not frames:
        return ""
    f = frames[0]
    return f" at {f['proc']} ({f['file']}:{f['line']}:{f['col']})" if f["file"] else ""


def show_log(store: Any, task_id: str, console: Console) -> None:
    """A task's event log, one event a line."""
    with store.view() as view:
        if view.task(task_id) is None and task_id not in view.unreadable:
            raise TaskError(f"no task {task_id}")
        events = [inspect.log_entry(seq, e) for seq, e in view.log(task_id)]
    if not events:
        console.line("the log is empty", "note")
    for e in events:
        details = " ".join(f"{k}={_detail(k, v)}" for k, v in e["details"].items()
                           if v is not None)
        console.line(f"{e['seq']:>4} {when(e['at'])} {e['kind']:<9} {details}".rstrip())


def _detail(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:12] if key == "program" else cut(text, 120)


def show_tasks(store: Any, console: Console) -> None:
    """The tasks of the store, oldest first."""
    with store.view() as view:
        records = view.tasks(limit=1 << 62)
        now = view.clock()
    if not records:
        console.line(f"no tasks in {store.path}", "note")
        return
    for rec in records:
        s = inspect.task_summary(rec, now)
        console.line(f"{s['id']}  {cut(s['name'], 20):<20}  {inspect.state_text(s, now)}")
