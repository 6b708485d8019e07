"""Effects: how a program asks the world for something.

Each effect stops the machine with a *request* (a map with ``:op``) and ends the step;
the runtime commits the request with the step, answers it (at once, or when a timer,
a message or another task gets there), and the answer enters the task's store before
the task sees it.  A wait that names no ``:timeout`` gets the task's default one; a
timeout raises ``{:type :timeout}``.
"""

from __future__ import annotations

from typing import Any

from ..printer import shown
from ..procedures import CONTROL, MACHINE, PRIMITIVES, Closure, Continuation, Primitive, define
from ..values import FlowmetalError, Keyword, Map, Vector, kw

K_OP = kw("op")
K_TIMEOUT = kw("timeout")


class TaskId:
    """A task's id as a Flowmetal value (printed #<task ID>)."""

    __slots__ = ("id",)

    def __init__(self, task_id: str):
        self.id = task_id

    def __eq__(self, other: Any) -> bool:
        return type(other) is TaskId and other.id == self.id

    def __hash__(self) -> int:
        return hash(("task", self.id))

    def __fm_repr__(self) -> str:
        return f"#<task {self.id}>"

    def __fm_display__(self) -> str:
        return self.id  # (str task) and println: the plain id, as flowmetal tasks shows it


def _request(op: str, **fields: Any) -> Map:
    return Map({K_OP: kw(op), **{kw(k.replace("_", "-")): v for k, v in fields.items()}})


def _seconds(op: str, value: Any, what: str = "seconds") -> Any:
    if value is None:
        return None
    if type(value) not in (int, float) or not value >= 0:  # NaN is not >= 0 either
        raise FlowmetalError(f"{op}: {what} must be a number of seconds >= 0, got "
                             f"{shown(value)}", "type-error")
    return float(value)


def _options(op: str, args: tuple, allowed: tuple[str, ...]) -> dict[str, Any]:
    if len(args) % 2:
        raise FlowmetalError(f"{op}: options come in pairs, e.g. :timeout 5", "arity-error")
    out = {}
    for key, value in zip(args[::2], args[1::2]):
        if type(key) is not Keyword or key.name not in allowed:
            raise FlowmetalError(f"{op}: unknown option {shown(key)}", "type-error")
        out[key.name] = value
    return out


def _task(op: str, value: Any) -> str:
    if type(value) is TaskId:
        return value.id
    if type(value) is str and value:
        return value
    raise FlowmetalError(f"{op}: expected a task id, got {shown(value)}", "type-error")


@define("sleep", CONTROL, 1)
def sleep(m: Any, args: tuple, k: Any) -> tuple:
    """(sleep seconds): wait that long; returns nil."""
    return m.suspend(_request("sleep", seconds=_seconds("sleep", args[0])), k)


NOW_REQUEST = _request("now")  # one map for every (now): the state encodes it once


@define("now", CONTROL, 0)
def now(m: Any, args: tuple, k: Any) -> tuple:
    """The current time in seconds since the epoch (a float), recorded for resumption."""
    return m.suspend(NOW_REQUEST, k)


@define("random", CONTROL, 0, 1)
def random_(m: Any, args: tuple, k: Any) -> tuple:
    """(random): a float in [0, 1); (random n): an integer in [0, n). Recorded."""
    if args and (type(args[0]) is not int or args[0] <= 0):
        raise FlowmetalError(f"random: expected a positive integer, got {shown(args[0])}",
                             "type-error")
    return m.suspend(_request("random", below=args[0] if args else None), k)


@define("send", CONTROL, 2)
def send(m: Any, args: tuple, k: Any) -> tuple:
    """(send task message): put message in the task's inbox; returns nil."""
    return m.suspend(_request("send", to=_task("send", args[0]), message=args[1]), k)


@define("spawn", CONTROL, 1, None)
def spawn(m: Any, args: tuple, k: Any) -> tuple:
    """(spawn f arg...): a new task running (f arg...); or (spawn "file.fm" arg...): a new
    task running that program with the args as *command-line-args*.  Returns its id."""
    target = args[0]
    if type(target) not in (Closure, Primitive, Continuation, str):
        raise FlowmetalError(f"spawn: expected a procedure or a program file, got "
                             f"{shown(target)}", "type-error")
    return m.suspend(_request("spawn", target=target, args=Vector(args[1:])), k)


@define("join", CONTROL, 1, 3)
def join(m: Any, args: tuple, k: Any) -> tuple:
    """(join task :timeout s): wait for the task to finish; its result (or its error,
    raised as {:type :task-failed :data {:task id :error e}}).
    (join coll) or (join sep coll): the display text of the items, separated."""
    if type(args[0]) is not TaskId:
        if len(args) > 2:
            raise FlowmetalError("join: (join coll), (join sep coll) or (join task "
                                 ":timeout s)", "arity-error")
        return None, None, k, PRIMITIVES["%join-strings"].fn(*args)
    opts = _options("join", args[1:], ("timeout",))
    # :timeout nil waits forever; no :timeout, the task's default wait.
    timeout = FOREVER if "timeout" in opts and opts["timeout"] is None else \
        _seconds("join", opts.get("timeout"), "timeout")
    return m.suspend(_request("join", task=_task("join", args[0]), timeout=timeout), k)


FOREVER = float("inf")  # the timeout of a wait that never times out


@define("cancel", CONTROL, 1)
def cancel(m: Any, args: tuple, k: Any) -> tuple:
    """(cancel task): ask the task to stop: it sees a {:type :cancelled} error where it
    stands.  True if it was asked, false if it had ended already."""
    return m.suspend(_request("cancel", task=_task("cancel", args[0])), k)


@define("%next-message", CONTROL, 3)
def next_message(m: Any, args: tuple, k: Any) -> tuple:
    """(%next-message after timeout deadline): the first inbox message after sequence
    number ``after`` as {:seq n :message m :deadline d}, waiting for one if need be."""
    after, timeout, deadline = args
    if type(after) is not int:
        raise FlowmetalError("%next-message: after must be an integer", "type-error")
    return m.suspend(_request("next-message", after=after,
                              timeout=_seconds("receive", timeout, "timeout"),
                              deadline=deadline), k)


@define("%consume", MACHINE, 1)
def consume(m: Any, seq: Any) -> None:
    """Mark inbox message ``seq`` as taken; it leaves the inbox when this step commits."""
    m.consumed.append(seq)


@define("self", MACHINE, 0)
def self_(m: Any) -> Any:
    """The id of the running task (nil outside a task)."""
    task_id = getattr(m, "task_id", None)
    return None if task_id is None else TaskId(task_id)


@define("task-id", min_args=1)
def task_id(value: Any) -> str:
    """The task id written as a string (as `flowmetal tasks` shows it)."""
    return _task("task-id", value)


@define("task?", min_args=1)
def is_task(value: Any) -> Any:
    """True for task ids."""
    from ..values import boolean

    return boolean(type(value) is TaskId)
