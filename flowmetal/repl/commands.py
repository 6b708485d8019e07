"""The REPL's meta-commands: input that starts with a comma and a name (``,help``).

Each command is a function ``(repl, argument_text)`` registered with its usage and one
line of help.  The inspector's commands need a task: ``,attach ID`` (or ``flowmetal
attach ID``) gives one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..printer import display_string
from ..reader import read_one
from ..report import format_error, format_source_error
from ..source import not_utf8, read_script
from ..values import FlowmetalError, Map, kw
from .describe import describe
from .forms import expand, layout
from .inspector import Inspector, find_task, show_log, show_tasks
from .spans import line_at, program_source, show_form

if TYPE_CHECKING:
    from .repl import Repl


@dataclass
class Command:
    """A meta-command: its name, the arguments it takes, one line of help, and what it
    does; ``inspector`` commands need an attached task."""

    name: str
    args: str
    help: str
    run: Callable[[Repl, str], None]
    inspector: bool = False


_K_BACKTRACE, _K_FILE, _K_LINE, _K_COL, _K_PROC, _K_MORE, _K_REPEATED = (
    kw(n) for n in ("backtrace", "file", "line", "col", "proc", "more", "repeated"))
COMMANDS: dict[str, Command] = {}
ALIASES = {"?": "help", "h": "help", "q": "quit", "exit": "quit", "e": "expand"}


def command(name: str, args: str = "", inspector: bool = False
            ) -> Callable[[Callable[[Repl, str], None]], Callable[[Repl, str], None]]:
    """Register the decorated function as the meta-command ``,name`` taking ``args``;
    the first line of its docstring is its help."""

    def register(fn: Callable[[Repl, str], None]) -> Callable[[Repl, str], None]:
        help = (fn.__doc__ or "").strip().splitlines()[0]
        COMMANDS[name] = Command(name, args, help, fn, inspector)
        return fn

    return register


def is_command(text: str) -> bool:
    """True for input that is a meta-command: a comma, then a letter or ``?``.

    (Commas are whitespace in Flowmetal, so ``,(f x)`` is still code.)
    """
    text = text.lstrip()
    return len(text) > 1 and text[0] == "," and (text[1].isalpha() or text[1] == "?")


def run_command(repl: Repl, text: str) -> None:
    """Run the meta-command in ``text`` (which ``is_command``)."""
    name, _, arg = text.strip()[1:].partition(" ")
    name = ALIASES.get(name, name)
    found = COMMANDS.get(name)
    if found is None:
        close = difflib.get_close_matches(name, list(COMMANDS), 3)
        hint = f" (did you mean {', '.join(',' + c for c in close)}?)" if close else ""
        repl.console.line(f"unknown command ,{name}{hint}: ,help lists them", "error")
        return
    if found.inspector and repl.inspector is None:
        repl.console.line(f",{name} needs a task: ,attach ID first (,tasks lists them)",
                          "error")
        return
    found.run(repl, arg.strip())


def _need(repl: Repl, arg: str, usage: str) -> bool:
    if arg:
        return True
    repl.console.line(f"usage: {usage}", "error")
    return False


def _count(repl: Repl, arg: str, default: int) -> int | None:
    if not arg:
        return default
    try:
        return int(arg)
    except ValueError:
        repl.console.line(f"expected a number, got {arg!r}", "error")
        return None


# ---------------------------------------------------------------------------------------
# The REPL


@command("help")
def cmd_help(repl: Repl, arg: str) -> None:
    """List the meta-commands."""
    c = repl.console
    c.line("Enter runs a complete form (an incomplete one gets a new line); Alt-Enter "
           "always adds a line.", "note")
    c.line("*1 *2 *3 are the last values, *e the last error. Meta-commands:", "note")
    width = max(len(f",{cmd.name} {cmd.args}") for cmd in COMMANDS.values())
    for cmd in COMMANDS.values():
        usage = f",{cmd.name} {cmd.args}".rstrip()
        c.line(f"  {usage:<{width}}  {cmd.help}")


@command("load", "FILE")
def cmd_load(repl: Repl, arg: str) -> None:
    """Run the program in FILE in this session."""
    if not _need(repl, arg, ",load FILE"):
        return
    try:
        text = read_script(arg)
    except UnicodeDecodeError:
        repl.console.line(not_utf8(arg), "error")
        repl.failures += 1
        return
    except OSError as exc:
        repl.console.line(f"cannot read {arg}: {exc.strerror or exc}", "error")
        repl.failures += 1
        return
    repl.evaluate(text, file=arg)


@command("time", "EXPR")
def cmd_time(repl: Repl, arg: str) -> None:
    """Evaluate EXPR and show how long it took."""
    if not _need(repl, arg, ",time EXPR"):
        return
    outcome = repl.evaluate(arg)
    if outcome.status in ("done", "error", "interrupted"):
        repl.console.line(f"; {outcome.seconds * 1000:.3f} ms, {outcome.reductions:,} "
                          "reductions", "note")


@command("expand", "FORM")
def cmd_expand(repl: Repl, arg: str) -> None:
    """Show FORM with its macros expanded."""
    if not _need(repl, arg, ",expand FORM"):
        return
    try:
        forms = expand(repl.evaluator.session, arg)
    except FlowmetalError as exc:
        repl.console.line(format_source_error(exc, "<expand>"), "error")
        return
    for form in forms:
        repl.console.value(layout(form))


@command("doc", "NAME")
def cmd_doc(repl: Repl, arg: str) -> None:
    """What NAME is: its arguments, documentation and definition."""
    if not _need(repl, arg, ",doc NAME"):
        return
    for line, style in describe(repl, arg):
        repl.console.line(line, style)


@command("apropos", "TEXT")
def cmd_apropos(repl: Repl, arg: str) -> None:
    """The names bound here that contain TEXT."""
    if not _need(repl, arg, ",apropos TEXT"):
        return
    names = repl.evaluator.names()
    found = sorted(n for n in names if arg.lower() in n.lower())
    if not found:
        repl.console.line(f"no name contains {arg!r}", "note")
    width = max((len(n) for n in found), default=0)
    for name in found:
        summary = describe(repl, name)
        doc = next((line.strip() for line, style in summary[1:] if style == ""), "")
        repl.console.line(f"{name:<{width}}  {names[name]:<12}  {doc}".rstrip())


@command("bt")
def cmd_bt(repl: Repl, arg: str) -> None:
    """The backtrace of the last error, with source (or the attached task's frames)."""
    if repl.inspector is not None:
        repl.inspector.backtrace()
        return
    error = repl.evaluator.last_error
    if error is None:
        repl.console.line("no error yet", "note")
        return
    c = repl.console
    for line in format_error(error).splitlines():
        if not line.startswith(("  at ", "  ...")):
            c.line(line, "error")
    frames = error.get(_K_BACKTRACE) if type(error) is Map else None
    for i, frame in enumerate(frames if isinstance(frames, (list, tuple)) else ()):
        if type(frame) is not Map or frame.get(_K_MORE) is not None:
            c.line("  ... (outer frames left out)", "note")
            continue
        file, line, col = (frame.get(k) for k in (_K_FILE, _K_LINE, _K_COL))
        repeated = frame.get(_K_REPEATED)
        more = f" (and {repeated} more times)" if repeated else ""
        c.line(f"  #{i} {display_string(frame.get(_K_PROC))} at {display_string(file)}:"
               f"{line}:{col}{more}", "heading")
        source = program_source(file) if isinstance(file, str) else None
        text = line_at(source, line) if source is not None and isinstance(line, int) \
            else None
        if text is not None:
            show_form(c, f"  {line:>4} | ", text, col if isinstance(col, int) else 1)


@command("reset")
def cmd_reset(repl: Repl, arg: str) -> None:
    """Start afresh: forget every definition and result."""
    repl.evaluator.reset()
    repl.console.line("a fresh session: only the standard library is defined", "note")


@command("quit")
def cmd_quit(repl: Repl, arg: str) -> None:
    """Leave the REPL (Ctrl-D too)."""
    repl.done = True


# ---------------------------------------------------------------------------------------
# Durable tasks


@command("spawn", "EXPR")
def cmd_spawn(repl: Repl, arg: str) -> None:
    """Start EXPR as a durable task (with this session's definitions)."""
    from ..runtime import api
    from .background import tag

    if not _need(repl, arg, ",spawn EXPR"):
        return
    store = repl.store(create=True)
    source = repl.evaluator.program_with_definitions(arg)
    try:
        task_id = api.start(store, source, "<repl>", script=None)
    except FlowmetalError as exc:
        repl.console.line(format_source_error(exc, "<repl>"), "error")
        return
    repl.last_task = task_id
    repl.console.line(f"task {task_id} started in {store.path}; its output shows as "
                      f"{tag(task_id)}; ,attach inspects it", "note")
    repl.background().follow(task_id)


@command("tasks")
def cmd_tasks(repl: Repl, arg: str) -> None:
    """List the tasks of the store."""
    show_tasks(repl.store(), repl.console)


@command("attach", "[ID]")
def cmd_attach(repl: Repl, arg: str) -> None:
    """Inspect a task (default: the last one spawned here)."""
    task = arg or repl.last_task or (repl.inspector.id if repl.inspector else None)
    if not task:
        repl.console.line("usage: ,attach ID (,tasks lists them)", "error")
        return
    store = repl.store()
    repl.inspector = Inspector(store, find_task(store, task), repl.console)
    repl.inspector.show()


@command("detach")
def cmd_detach(repl: Repl, arg: str) -> None:
    """Stop inspecting the task."""
    if repl.inspector is not None:
        repl.console.line(f"detached from task {repl.inspector.id}", "note")
    repl.inspector = None


@command("log", "[ID]")
def cmd_log(repl: Repl, arg: str) -> None:
    """A task's event log (default: the attached task)."""
    task = arg or (repl.inspector.id if repl.inspector else repl.last_task)
    if not task:
        repl.console.line("usage: ,log ID", "error")
        return
    store = repl.store()
    show_log(store, find_task(store, task), repl.console)


@command("send", "ID FORM")
def cmd_send(repl: Repl, arg: str) -> None:
    """Put the data FORM in a task's inbox."""
    from ..runtime import api

    task, _, form = arg.partition(" ")
    if not (task and form.strip()):
        repl.console.line("usage: ,send ID FORM", "error")
        return
    try:
        message = read_one(form, "<send>")
    except FlowmetalError as exc:
        repl.console.line(format_source_error(exc, "<send>"), "error")
        return
    store = repl.store()
    task_id = find_task(store, task)
    seq = api.send(store, task_id, message)
    repl.console.line(f"message #{seq} sent to task {task_id}", "note")


# ---------------------------------------------------------------------------------------
# The inspector


@command("show", inspector=True)
def cmd_show(repl: Repl, arg: str) -> None:
    """The attached task's status and current frame, read afresh."""
    repl.inspector.load()
    repl.inspector.show()


@command("up", "[N]", inspector=True)
def cmd_up(repl: Repl, arg: str) -> None:
    """The frame N further out (the caller)."""
    n = _count(repl, arg, 1)
    if n is not None:
        repl.inspector.up(n)


@command("down", "[N]", inspector=True)
def cmd_down(repl: Repl, arg: str) -> None:
    """The frame N further in."""
    n = _count(repl, arg, 1)
    if n is not None:
        repl.inspector.down(n)


@command("frame", "N", inspector=True)
def cmd_frame(repl: Repl, arg: str) -> None:
    """Frame number N (#0 is the innermost)."""
    n = _count(repl, arg, repl.inspector.index)
    if n is not None:
        repl.inspector.move(n)


@command("locals", inspector=True)
def cmd_locals(repl: Repl, arg: str) -> None:
    """The local variables of the frame, in full."""
    repl.inspector.locals()


@command("eval", "EXPR", inspector=True)
def cmd_eval(repl: Repl, arg: str) -> None:
    """Evaluate EXPR in the frame, with its locals (on a copy: the task never changes)."""
    if not _need(repl, arg, ",eval EXPR"):
        return
    session = repl.inspector.frame_session()
    if session is not None:
        repl.evaluate(arg, session=session)


@command("inbox", inspector=True)
def cmd_inbox(repl: Repl, arg: str) -> None:
    """The messages waiting in the task's inbox."""
    repl.inspector.inbox()


@command("outbox", inspector=True)
def cmd_outbox(repl: Repl, arg: str) -> None:
    """What the task has asked for and waits on."""
    repl.inspector.outbox()


@command("watch", "[SECONDS]", inspector=True)
def cmd_watch(repl: Repl, arg: str) -> None:
    """Follow the task live as its steps commit (Ctrl-C stops)."""
    try:
        seconds = float(arg) if arg else 60.0
    except ValueError:
        repl.console.line(f"expected a number of seconds, got {arg!r}", "error")
        return
    repl.inspector.watch(seconds, output=not repl.shows_output_of(repl.inspector.id))


@command("step", inspector=True)
def cmd_step(repl: Repl, arg: str) -> None:
    """The next recorded step of a trace-mode task."""
    repl.inspector.step()


@command("back", inspector=True)
def cmd_back(repl: Repl, arg: str) -> None:
    """The recorded step before (trace mode)."""
    repl.inspector.back()
