"""The ``flowmetal`` command: run programs as durable tasks, and manage a store's tasks."""

from __future__ import annotations

import functools
import math
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from .printer import to_string
from .report import format_error, format_source_error
from .source import read_script
from .values import FlowmetalError

if TYPE_CHECKING:
    import argparse

USAGE = """\
usage: flowmetal [--store DIR] FILE.fm [ARGS...]
       flowmetal [--store DIR] COMMAND [OPTIONS...]
       flowmetal [--store DIR] [repl]
       flowmetal -e EXPR [ARGS...]
       flowmetal --help | --version"""

HELP = USAGE + """

Run a Flowmetal program as a durable task: its state is committed to a store after
every step, so it survives Ctrl-C, kill -9 and restarts, and carries on where it
stopped.

With no arguments, flowmetal opens the REPL (the plain line REPL when standard input
or output is not a terminal, so it can be scripted).

Commands:
  repl                    the REPL: ,help there lists its meta-commands
  attach ID               inspect a task (status, frames, locals, inbox, log), live
                          while a worker runs it, without changing it
  run FILE.fm [ARGS...]   run the program as a task in the foreground, showing its
                          output ("run" is optional); the program sees ARGS as
                          *command-line-args* (a vector of strings), the path as *file*
  resume ID               finish a task in the foreground (after Ctrl-C or a crash),
                          showing only output not shown before
  start FILE.fm [ARGS...] submit the program as a task and print its id
  worker                  run the store's tasks until Ctrl-C or SIGTERM, showing
                          their output and a line for each task that ends
  connector http          make the HTTP requests of the store's tasks (for workers
                          started with --no-http)
  serve                   the control plane: the HTTP API, the web UI and the
                          callback URLs tasks make (--listen, --public-url)
  token create|list|revoke
                          the bearer tokens the control plane takes
  tasks                   list the tasks of the store
  show ID                 a task's status, result or error, and continuation
  log ID                  a task's event log
  output ID [-f]          a task's output (-f: follow it until the task ends)
  send ID FORM            put the data FORM in a task's inbox
  cancel ID               cancel a task: it gets a {:type :cancelled} error
  rm ID...                delete finished tasks with their logs and output
  prune --done --older-than 7d
                          delete the finished tasks that ended long ago
  export ID > FILE        write a task to one file and mark it moved
  import FILE             add an exported task to this store
  deploy FILE.fm [NAME]   store a program under NAME for (spawn "NAME" ...)
  upgrade ID [--to FILE]  move a waiting task onto new code (--dry-run: the report)
  store init|copy         create or migrate a store's schema; copy a whole store
  shipyard apply FILE | show | list
                          store a project's shipyard (Keptn's stages, sequences
                          and tasks) as its next version; print one; list them
  evaluate SLO.yaml --values VALUES.json [--previous PREVIOUS.json]
                          judge SLI values by an SLO file (Keptn's format) and print
                          the evaluation as JSON (--prometheus URL --sli SLI.yaml: ask
                          a Prometheus server for the values)
  trigger STAGE.SEQUENCE [--data JSON]
                          start a run of a shipyard's sequence (a durable task)
  sequences [pause|resume|abort ID]
                          the latest runs, what each waits on and which blocks
                          which, the task types no worker serves; or control a run
"flowmetal COMMAND --help" describes a command's options. Wherever a command takes a
task's ID, a part of it that starts or ends only that task's id will do.

Options:
  --store DIR|URL     the store: a directory (LMDB) or a postgresql:// URL
                      (default: $FLOWMETAL_HOME, or ./.flowmetal)
  --server URL        a control plane's store (flowmetal serve), with $FLOWMETAL_TOKEN
                      (default: $FLOWMETAL_SERVER): tasks, show, log, output,
                      attach, start, send, cancel, deploy, trigger and sequences work
                      through it
  -e, --eval EXPR     evaluate EXPR as a task in a temporary store and print the
                      value of its last form, unless it is nil; ARGS after EXPR
                      are *command-line-args*
  -h, --help          show this help and exit
  -V, --version       show the version and exit

A script whose first line is "#!/usr/bin/env flowmetal" can be run directly.

Exit status:
  0    done
  1    the task failed: an uncaught Flowmetal error (its backtrace is printed on
       stderr), a limit, or a cancellation
  2    a usage error, an unreadable file, a read or syntax error in the source, an
       unknown task, or an operation the task's state does not allow
  70   an internal error of Flowmetal itself (a bug: please report it)
  130  interrupted (Ctrl-C or SIGTERM); a run leaves its task in the store
  141  standard output was closed (e.g. piped into head)

Set FLOWMETAL_TRACEBACK=1 to see the Python traceback of an internal error."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # sysexits.h's EX_SOFTWARE
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE

READ_ONLY_HINT = ": commands that only read (tasks, show, log, output) still work"
EXPR_FILE = "<expr>"
RECENT_FINISHED = 20  # finished tasks `flowmetal tasks` lists without --all


class OutputClosed(BaseException):
    """Standard output was closed under us (e.g. piped into ``head``).

    A BaseException so that the machine, which turns Python exceptions raised inside
    primitives into catchable Flowmetal errors, lets it through and the run stops.
    """


class UsageError(Exception):
    """A command line that does not say what to do; ``usage`` is the command's usage."""

    def __init__(self, message: str, usage: str = USAGE):
        super().__init__(message)
        self.usage = usage


class Exit(Exception):  # noqa: N818 (not an error: how argparse's --help ends)
    """Leave with this status (argparse's --help and errors)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    from .runtime.records import TaskError
    from .store import StoreError
    from .store.base import StoreReadOnly

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return dispatch(args)
    except UsageError as exc:
        _err(f"flowmetal: {exc}\n{exc.usage.rstrip()}")
        return EXIT_USAGE
    except Exit as exc:
        return exc.status
    except (TaskError, StoreError) as exc:
        _flush_stdout()
        _err(f"flowmetal: {exc}{READ_ONLY_HINT if isinstance(exc, StoreReadOnly) else ''}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _flush_stdout()
        _err("flowmetal: interrupted")
        return EXIT_INTERRUPTED
    except (OutputClosed, BrokenPipeError):
        _detach_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        _flush_stdout()
        if os.environ.get("FLOWMETAL_TRACEBACK"):
            import traceback  # (only here: it is slow to import)

            traceback.print_exc()
        _err(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_INTERNAL


def dispatch(args: list[str]) -> int:
    """Interpret the command-line arguments and do what they ask."""
    store_path, args = _leading_store(args)
    if not args:
        return cmd_repl([], store_path)
    first = args[0]
    if first in ("-h", "--help"):
        _out(HELP + "\n")
        return EXIT_OK
    if first in ("-V", "--version"):
        _out(f"flowmetal {version()}\n")
        return EXIT_OK
    if first in ("-e", "--eval"):
        if len(args) < 2:
            raise UsageError(f"{first} needs an expression")
        return run_expression(args[1], args[2:])
    command = COMMANDS.get(first)
    if command is not None:
        from .store.base import NotThroughServer, StoreError

        try:
            return command(args[1:], store_path)
        except NotThroughServer as exc:
            raise StoreError(needs_store_itself(first, exc.server)) from None
    if first.startswith("-"):
        raise UsageError(f"unknown option {first}")
    if not os.path.exists(first) and _looks_like_command(first):
        raise UsageError(unknown_command(first))
    return run_file(first, args[1:], store_path)


def _looks_like_command(word: str) -> bool:
    """A word that names no file and could be a command: no path, no extension."""
    return bool(word) and "/" not in word and "." not in word


def unknown_command(word: str) -> str:
    """The message for a command line whose first word is neither a command nor a file,
    with the command it was perhaps meant to be."""
    import difflib

    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown command {word}{hint}; flowmetal --help lists the commands"


def _leading_store(args: list[str]) -> tuple[str | None, list[str]]:
    """``--store DIR`` (or ``--store=DIR``) given before the command or file."""
    store = None
    while args and (args[0] in ("--store", "--server") or
                    args[0].startswith(("--store=", "--server="))):
        if args[0] in ("--store", "--server"):
            if len(args) < 2:
                raise UsageError(f"{args[0]} needs a directory or a URL")
            store, args = args[1], args[2:]
        else:
            store, args = args[0].split("=", 1)[1], args[1:]
    return store, args


def version() -> str:
    """The installed version of Flowmetal."""
    from importlib import metadata  # only here: it is slow to import

    try:
        return metadata.version("flowmetal")
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def open_store(path: str | None, create: bool = True, itself: str | None = None) -> Any:
    """The store at ``path`` (default: $FLOWMETAL_SERVER, $FLOWMETAL_HOME or
    ./.flowmetal); unless ``create``, a missing store is a StoreError.  ``itself``: the
    command, which needs the store itself (it runs tasks), refused at once for a server
    before it does anything."""
    from .store import StoreError, default_path, is_server, is_url
    from .store import open_store as open_location

    location = path or os.environ.get("FLOWMETAL_SERVER") or default_path()
    if itself is not None and is_server(location):
        raise StoreError(needs_store_itself(itself, location))
    if not is_url(location) and not is_server(location):
        _check_store_directory(location, create)
    try:
        store = open_location(location, create=create)
    except OSError as exc:
        raise StoreError(f"cannot {'create' if create else 'open'} the store at "
                         f"{os.path.abspath(location)}: {exc.strerror or exc}") from None
    return store  # (the standard library is loaded by what needs it: not ``tasks``)


def needs_store_itself(command: str, server: str) -> str:
    """Why ``command`` cannot be done through the control plane at ``server``."""
    return (f"flowmetal {command} needs the store itself, not the server at "
            f"{server.rstrip('/')}: run it where the store is, with --store DIR or a "
            "postgresql:// URL")


def _check_store_directory(location: str, create: bool) -> None:
    """Refuse a store path that cannot be a store directory, saying why."""
    from .store import StoreError

    where = os.path.abspath(location)
    if os.path.exists(where) and not os.path.isdir(where):
        raise StoreError(f"the store path {where} is a file, not a store directory")
    if create and not os.path.exists(where):
        parent = os.path.dirname(where)
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent and not os.path.isdir(parent):
            raise StoreError(f"cannot create the store at {where}: {parent} is a file")


# ---------------------------------------------------------------------------------------
# Running programs in the foreground


def run_file(path: str, args: list[str], store_path: str | None = None,
             slice_size: int | None = None, trace: bool = False,
             limits: dict | None = None) -> int:
    """Run the script at ``path`` as a task with command-line arguments ``args``."""
    text = _read_program(path)
    if text is None:
        return EXIT_USAGE
    args = program_arguments(args)
    store = open_store(store_path, itself="run")
    return run_source(store, text, path, args, script=path, print_value=False,
                      slice_size=slice_size, trace=trace, limits=limits)


def _read_program(path: str) -> str | None:
    try:
        return read_script(path)
    except OSError as exc:
        _err(f"flowmetal: cannot read {path}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        _err(_not_utf8(path))
    return None


def _not_utf8(path: str) -> str:
    """``FILE:LINE:COL: not UTF-8 text (byte 0xNN)`` for a file that is not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _position(data, exc.start)
        return f"{path}:{line}:{col}: not UTF-8 text (byte 0x{data[exc.start]:02x})"
    except OSError as exc:
        return f"flowmetal: cannot read {path}: {exc.strerror or exc}"
    return f"flowmetal: cannot read {path}: it is not UTF-8 text"


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """The 1-based line and column (in characters) of byte ``offset`` of UTF-8 ``data``."""
    start = data.rfind(b"\n", 0, offset) + 1
    line = data.count(b"\n", 0, offset) + 1
    return line, len(data[start:offset].decode("utf-8", "replace")) + 1


def utf8_argument(text: str, what: str) -> str:
    """``text``, a command-line argument, unless it holds bytes that are not UTF-8 (which
    Python keeps as lone surrogates): then a UsageError naming ``what`` and where."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        data = text.encode("utf-8", "surrogateescape")
        offset = len(text[:exc.start].encode("utf-8", "surrogateescape"))
        line, col = _position(data, offset)
        raise UsageError(f"{what} is not UTF-8 text: byte 0x{data[offset]:02x} at "
                         f"{line}:{col}") from None
    return text


def program_arguments(args: list[str]) -> list[str]:
    """A program's command-line arguments, each checked to be UTF-8 text."""
    return [utf8_argument(a, f"argument {i} of the program") for i, a in enumerate(args, 1)]


def run_expression(expr: str, args: list[str]) -> int:
    """Evaluate ``expr`` as a task in a temporary store and print its value."""
    from .store import open_store as open_location

    expr = utf8_argument(expr, "the expression")
    args = program_arguments(args)
    where = tempfile.mkdtemp(prefix="flowmetal-eval-")
    try:
        store = open_location(where, sync=False)  # a scratch store: no need to sync
        return run_source(store, expr, EXPR_FILE, args, script=None, print_value=True,
                          resumable=False)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def run_source(store: Any, text: str, file: str, args: list[str], script: str | None,
               print_value: bool, slice_size: int | None = None, trace: bool = False,
               resumable: bool = True, limits: dict | None = None) -> int:
    """Start program ``text`` (named ``file`` in messages) as a task in ``store`` and run
    it in the foreground, streaming its output.

    ``script`` becomes ``*file*``; with ``print_value`` the final value is printed
    readably unless it is nil.
    """
    from .runtime import api

    try:
        task_id = api.start(store, text, file, args, limits=limits, trace=trace,
                            script=script)
    except FlowmetalError as exc:
        # Read errors, syntax errors, and errors raised by macros during expansion.
        _err(format_source_error(exc, file))
        return EXIT_USAGE
    return follow(store, task_id, print_value, slice_size, resumable)


def follow(store: Any, task_id: str, print_value: bool = False,
           slice_size: int | None = None, resumable: bool = True) -> int:
    """Run the store's tasks until ``task_id`` finishes, showing its output; report its
    end.  SIGINT or SIGTERM stops the run and leaves the task in the store."""
    from .runtime import api
    from .runtime.worker import Worker, tune_gc

    tune_gc()
    worker = Worker(store) if slice_size is None else Worker(store, slice_size=slice_size)
    # (A scratch store, the one thing not resumable, has nothing in its outbox until its
    # task puts it there.)
    worker.connector = http_connector(store) if resumable else _ConnectorWhenAsked(store)
    with stop_signals() as stopped:
        try:
            rec = api.run_foreground(store, task_id, write_stdout, worker, stop=stopped)
        except KeyboardInterrupt:
            rec = None
    if rec is None or not rec.finished:
        _flush_stdout()
        if resumable:
            _err(f"flowmetal: task {task_id} left in the store; finish it with: "
                 f"{resume_command(store, task_id)}")
        else:
            _err("flowmetal: interrupted")
        return EXIT_INTERRUPTED
    return report_end(rec, print_value)


def report_end(rec: dict, print_value: bool = False) -> int:
    """Print how a finished task ended (its value, or its error on stderr); the exit
    status for it."""
    from .runtime.records import result_value

    if rec.status == "done":
        value = result_value(rec)
        if print_value and value is not None:
            write_stdout(to_string(value) + "\n")
        return EXIT_OK
    _flush_stdout()
    if rec.status == "moved":
        _err(f"flowmetal: task {rec.id} moved to another store")
    else:
        _err(format_error(result_value(rec)))
    return EXIT_ERROR


def resume_command(store: Any, task_id: str) -> str:
    """The command that finishes the task (naming the store unless it is the default)."""
    from .store import default_path

    command = f"flowmetal resume {task_id}"
    if os.path.abspath(default_path()) != store.path:
        command += f" --store {shlex.quote(store.path)}"
    return command


@contextmanager
def stop_signals() -> Iterator[Callable[[], bool]]:
    """While inside, the first SIGINT or SIGTERM asks to stop (the callable yielded says
    whether one came): a slice running then is abandoned at once, its task left at its
    last committed step (``runtime.slices``); a second one raises KeyboardInterrupt."""
    from .runtime import slices

    requested: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        slices.request_stop()

    import signal

    slices.reset_stop()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(requested)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        slices.reset_stop()


# ---------------------------------------------------------------------------------------
# Commands


@functools.cache
def _parser_class() -> type:
    """argparse, reporting through UsageError and Exit instead of exiting (made on first
    use: ``flowmetal -e`` and a script's run parse no options)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{self.prog.split()[-1]}: {message}", self.format_usage())

        def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore
            if message:
                _err(message.rstrip())
            raise Exit(status)

    return _Parser


def _parser(name: str, description: str, store_path: str | None) -> Any:
    p = _parser_class()(prog=f"flowmetal {name}", description=description)
    p.add_argument("--store", "--server", metavar="DIR|URL", default=store_path,
                   help="the store: a directory, a postgresql:// URL, or the http(s):// URL "
                   "of a control plane (with $FLOWMETAL_TOKEN) (default: "
                   "$FLOWMETAL_SERVER, $FLOWMETAL_HOME, or ./.flowmetal)")
    return p


LIMIT_OPTIONS = {  # option -> (Limits field, how it is read)
    "--fuel": "fuel", "--depth": "depth", "--state": "state", "--deadline": "deadline",
    "--wait": "wait",
}


def _program_options(command: str, args: list[str], store_path: str | None
                     ) -> tuple[dict, str, list[str]]:
    """Options before FILE, FILE, and the program's arguments (everything after FILE).

    ``run`` takes ``--store DIR``, ``--slice N``, ``--trace`` and the limits (``--fuel
    --depth --state --deadline --wait``); ``start`` (which runs nothing, so has no
    slice) the same but ``--slice``.
    """
    runs = command == "run"
    usage = (f"usage: flowmetal {command} [--store DIR]{' [--slice N]' if runs else ''} "
             "[--trace] [--wait T] [--deadline T] [--fuel N] [--depth N] [--state SIZE] "
             "FILE.fm [ARGS...]")
    opts: dict[str, Any] = {"store": store_path, "slice": None, "trace": False,
                            "limits": {}}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        arg = args[i]
        name, eq, value = arg.partition("=")
        if arg in ("-h", "--help"):
            _out((RUN_HELP if runs else START_HELP).format(usage=usage,
                                                           limits=LIMITS_HELP) + "\n")
            raise Exit(EXIT_OK)
        if arg == "--":
            i += 1
            break
        if name in ("--store", *LIMIT_OPTIONS) or (runs and name == "--slice"):
            if not eq:
                if i + 1 >= len(args):
                    raise UsageError(f"{name} needs a value", usage)
                value = args[i + 1]
                i += 1
            if name in LIMIT_OPTIONS:
                opts["limits"][LIMIT_OPTIONS[name]] = _limit(name, value, usage)
            else:
                opts[name[2:]] = value
        elif arg == "--trace":
            opts["trace"] = True
        else:
            raise UsageError(f"unknown option {arg}", usage)
        i += 1
    if i >= len(args):
        raise UsageError(f"{command} needs a FILE", usage)
    if opts["slice"] is not None:
        opts["slice"] = _positive(opts["slice"], "--slice", usage)
    return opts, args[i], args[i + 1:]


def _limit(option: str, text: str, usage: str) -> Any:
    """The value of a limit option: ``--fuel``/``--depth`` counts, ``--state`` a size,
    ``--deadline``/``--wait`` durations (``none``: no limit; a wait of none waits
    forever)."""
    from .quantities import QuantityError, parse_count, parse_duration, parse_size

    try:
        if option == "--fuel":
            return parse_count(text)  # none: no limit, the default
        if option == "--depth":
            return parse_count(text, none_ok=False)
        if option == "--state":
            return parse_size(text)
        seconds = parse_duration(text)
        if option == "--deadline":
            return None if seconds == math.inf else seconds  # none: the default
        return seconds
    except QuantityError as exc:
        raise UsageError(f"{option}: {exc}", usage) from None


LIMITS_HELP = """\
  --wait T      how long a wait without :timeout (receive, join) waits before it
                raises {{:type :timeout}} (default 1d; none: forever, as :timeout nil)
  --deadline T  fail the task when it has not ended T after it started (default none)
  --fuel N      fail the task after N reductions in all (default none)
  --depth N     fail the task when its continuation is deeper than N frames
  --state SIZE  fail the task when its state takes more than SIZE (e.g. 64M)
  T is a duration: 30 or 30s, 500ms, 5m, 2h, 7d. Each limit is kept with the task and
  shown by flowmetal show; the tasks it spawns inherit them."""

RUN_HELP = """{usage}

Run the program in FILE.fm as a task in the foreground, showing its output as its steps
commit; ARGS are its *command-line-args*. The run works only on this task and the tasks
it spawns (a worker runs the store's other tasks). Ctrl-C or SIGTERM stops it and
leaves the task in the store: flowmetal resume ID finishes it.

Options (before FILE.fm):
  --store DIR   the store (default: $FLOWMETAL_HOME, or ./.flowmetal)
  --slice N     reductions a step may make before it is committed (default 10000;
                1 commits every reduction)
  --trace       keep every step's state in the task's log (see flowmetal log)
{limits}"""

START_HELP = """{usage}

Submit the program in FILE.fm as a task, runnable, and print its id; ARGS are its
*command-line-args*. A worker (flowmetal worker) runs it.

Options (before FILE.fm):
  --store DIR   the store (default: $FLOWMETAL_HOME, or ./.flowmetal)
  --trace       keep every step's state in the task's log (see flowmetal log)
{limits}"""


def _positive(text: str, name: str, usage: str = USAGE) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{name} needs a positive integer, got {text!r}", usage)
    return value


def cmd_run(args: list[str], store_path: str | None) -> int:
    """flowmetal run FILE.fm [ARGS...]"""
    opts, path, program_args = _program_options("run", args, store_path)
    return run_file(path, program_args, opts["store"], opts["slice"], opts["trace"],
                    opts["limits"])


def cmd_start(args: list[str], store_path: str | None) -> int:
    """flowmetal start FILE.fm [ARGS...]: submit, print the id."""
    from .runtime import api

    opts, path, program_args = _program_options("start", args, store_path)
    text = _read_program(path)
    if text is None:
        return EXIT_USAGE
    program_args = program_arguments(program_args)
    store = open_store(opts["store"])
    try:
        task_id = api.start(store, text, path, program_args, limits=opts["limits"],
                            trace=opts["trace"], script=path)
    except FlowmetalError as exc:
        _err(format_source_error(exc, path))
        return EXIT_USAGE
    _out(task_id + "\n")
    return EXIT_OK


def cmd_resume(args: list[str], store_path: str | None) -> int:
    """flowmetal resume ID: finish the task in the foreground."""
    from .runtime import api

    p = _parser("resume", "Run a task of the store in the foreground until it finishes, "
                "showing the output it has not shown yet (as run does).", store_path)
    p.add_argument("id", metavar="ID", help="the task's id (flowmetal tasks lists them)")
    p.add_argument("--slice", type=int, default=None, metavar="N",
                   help="reductions per step (default 10000)")
    ns = p.parse_args(args)
    if ns.slice is not None and ns.slice < 1:
        p.error("--slice must be at least 1")
    store = open_store(ns.store, create=False, itself="resume")
    task_id = api.find_task(store, ns.id)
    rec = api.get(store, task_id)
    if rec.status == "moved":
        _err(f"flowmetal: task {task_id} moved to another store; resume it there")
        return EXIT_USAGE
    if not rec.finished:
        with store.view() as view:
            family = api.tree(view, task_id)
        api.release_dead_leases(store, family)
    return follow(store, task_id, slice_size=ns.slice)


def cmd_repl(args: list[str], store_path: str | None) -> int:
    """flowmetal repl: the read-eval-print loop."""
    from .repl.repl import main as repl_main

    p = _parser("repl", "Read, evaluate and print Flowmetal: prompt_toolkit on a "
                "terminal, a plain line REPL otherwise (values on stdout, errors on "
                "stderr, exit status 1 if an input failed). ,help lists the "
                "meta-commands.", store_path)
    ns = p.parse_args(args)
    return repl_main(ns.store)


def cmd_attach(args: list[str], store_path: str | None) -> int:
    """flowmetal attach ID: the inspector on one task."""
    from .repl.repl import main as repl_main

    p = _parser("attach", "Inspect a task: its status and its committed continuation's "
                "frames with their source and local variables; ,up ,down ,locals ,inbox "
                ",log ,watch and (trace mode) ,step ,back there. Only reads the store, so "
                "it works while a worker runs the task.", store_path)
    p.add_argument("id", metavar="ID", help="the task's id, or a part of it that names "
                   "one task (flowmetal tasks lists them)")
    ns = p.parse_args(args)
    from .runtime import api

    task_id = api.find_task(open_store(ns.store, create=False), ns.id)
    return repl_main(ns.store, attach=task_id)


def cmd_worker(args: list[str], store_path: str | None) -> int:
    """flowmetal worker: run the store's tasks until stopped."""
    from .runtime import api
    from .runtime.worker import Worker, tune_gc

    p = _parser("worker", "Run the tasks of the store: lease runnable tasks, run their "
                "steps, fire timers. Shows what its tasks print, each line as [ID] LINE "
                "once its step is committed, and a line [ID] NAME STATUS: VALUE when a "
                "task ends. Stops on SIGINT or SIGTERM, committing the steps it ran and "
                "releasing its leases.", store_path)
    p.add_argument("--slice", type=int, default=10_000, metavar="N",
                   help="reductions a step may make before it is committed (default 10000)")
    p.add_argument("--batch", type=int, default=64, metavar="N",
                   help="tasks leased and committed together per round (default 64)")
    p.add_argument("--until-idle", action="store_true",
                   help="stop when nothing is left to do without help from outside: no "
                   "task is runnable (but blocked ones), no sleep or wait with an "
                   ":timeout is armed, only waits for messages and joins without one "
                   "(the default wait) or forever")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="do not show the tasks' output, nor a line when each ends")
    p.add_argument("--no-http", action="store_true",
                   help="make no HTTP requests here: leave them to `flowmetal connector http` "
                   "processes")
    ns = p.parse_args(args)
    for name in ("slice", "batch"):
        if getattr(ns, name) < 1:
            p.error(f"--{name} must be at least 1")
    store = open_store(ns.store, itself="worker")
    api.release_dead_leases(store)
    tune_gc()
    worker = Worker(store, slice_size=ns.slice, batch=ns.batch)
    if not ns.quiet:
        from .runtime.reporter import Reporter

        worker.on_round = Reporter(store, write_stdout).round
    if not ns.no_http:
        worker.connector = http_connector(store)
    with stop_signals() as stopped:
        try:
            worker.run(until=stopped, idle_exit=ns.until_idle)
        except KeyboardInterrupt:
            store.release(worker.id)
            _err("flowmetal: worker interrupted")
            return EXIT_INTERRUPTED
    return EXIT_OK


def http_connector(store: Any, concurrency: int = 100, threaded: bool = False) -> Any:
    """An HTTP request connector on the store, saying on stderr when it loses a lease;
    its event loop runs in the thread of the worker whose rounds it is part of, or
    (``threaded``) in a thread of its own."""
    from .connectors.http import HttpConnector

    return HttpConnector(store, concurrency=concurrency, log=_err, threaded=threaded)


class _ConnectorWhenAsked:
    """The HTTP connector of a store no other process writes to (``flowmetal -e``'s),
    made when a step first makes an outbox entry: there is nothing to claim before, and
    importing the connector is a part of every start."""

    def __init__(self, store: Any):
        self.store = store
        self.real: Any = None

    @property
    def busy(self) -> bool:
        return self.real is not None and self.real.busy

    def round_part(self, asked: bool) -> Any:
        if self.real is None:
            if not asked:
                return None  # (the worker's round then has no part of a connector)
            self.real = http_connector(self.store)
        return self.real.round_part(asked)

    def round_done(self, part: Any, result: Any) -> int:
        return self.real.round_done(part, result)

    def round_failed(self, part: Any) -> None:
        self.real.round_failed(part)

    def wait(self, timeout: float) -> None:
        self.real.wait(timeout)

    def pump(self) -> None:
        if self.real is not None:
            self.real.pump()

    def stop(self) -> None:
        if self.real is not None:
            self.real.stop()


def cmd_connector(args: list[str], store_path: str | None) -> int:
    """flowmetal connector http: make the HTTP requests of the store's tasks."""
    p = _parser("connector", "Run a connector: claim the requests tasks put in the store's "
                "outbox, make them, and answer the tasks. Stops on SIGINT or SIGTERM, "
                "releasing the requests it holds.", store_path)
    p.add_argument("kind", choices=["http"], help="which connector")
    p.add_argument("--concurrency", type=int, default=100, metavar="N",
                   help="requests made at once (default 100)")
    p.add_argument("--lease", type=float, default=15.0, metavar="SECONDS",
                   help="how long a request it holds waits for it before another connector "
                   "may take it over, should this one die (renewed while it works; "
                   "default 15)")
    ns = p.parse_args(args)
    if ns.concurrency < 1 or not ns.lease > 0:
        p.error("--concurrency must be at least 1 and --lease above 0")
    connector = http_connector(open_store(ns.store), ns.concurrency, threaded=True)
    connector.lease_seconds = ns.lease
    with stop_signals() as stopped:
        try:
            connector.run(until=stopped)
        except KeyboardInterrupt:
            _err("flowmetal: connector interrupted")
            return EXIT_INTERRUPTED
    return EXIT_OK


def cmd_serve(args: list[str], store_path: str | None) -> int:
    """flowmetal serve: the control plane's HTTP API and the callback URLs."""
    p = _parser("serve", "Serve the store over HTTP: the control plane's JSON API (with "
                "bearer tokens: flowmetal token create), its OpenAPI document at "
                "/openapi.json, and the callback URLs tasks make. Stops on SIGINT or "
                "SIGTERM.", store_path)
    p.add_argument("--listen", default="127.0.0.1:8400", metavar="HOST:PORT",
                   help="where to listen (default 127.0.0.1:8400)")
    p.add_argument("--public-url", metavar="URL",
                   help="how others reach this server (callback URLs start with it); kept "
                   "in the store for every worker")
    p.add_argument("--open", action="store_true",
                   help="print a one-time sign-in URL of the web UI (valid for 5 minutes; it "
                   "makes a token named 'flowmetal serve --open', revoked when the server "
                   "stops)")
    ns = p.parse_args(args)
    host, _, port = ns.listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        p.error("--listen takes HOST:PORT, e.g. 127.0.0.1:8400")
    store = open_store(ns.store)
    if ns.public_url is not None:
        from urllib.parse import urlsplit

        parts = urlsplit(ns.public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            p.error("--public-url takes an http or https URL")
        from .store.callbacks import PUBLIC_URL

        store.set_setting(PUBLIC_URL, ns.public_url.rstrip("/"))
    from aiohttp import web

    from .server.app import make_app

    app = make_app(store, log=_err)
    _err(f"flowmetal serve: listening on http://{host}:{port}")
    if ns.open:
        from .ui.session import open_link

        _out(open_link(app, store, ns.public_url or _local_url(host, port)) + "\n")
        _flush_stdout()
    web.run_app(app, host=host.strip("[]"), port=int(port), print=None, access_log=None)
    return EXIT_OK


def _local_url(host: str, port: str) -> str:
    """This machine's URL of a server listening on ``host``:``port``."""
    if host.strip("[]") in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def cmd_token(args: list[str], store_path: str | None) -> int:
    """flowmetal token create|list|revoke: the control plane's access tokens."""
    p = _parser("token", "Make, list and revoke the bearer tokens of the control plane. A "
                "token is shown once, when it is made; the store keeps only its SHA-256.",
                store_path)
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="make a token and print it")
    create.add_argument("--name", default="", help="what it is for")
    create.add_argument("--scope", choices=["read", "write"], default="write",
                        help="read: GET requests only; write: everything (default)")
    sub.add_parser("list", help="list the tokens (never the tokens themselves)")
    revoke = sub.add_parser("revoke", help="revoke a token")
    revoke.add_argument("id", metavar="ID", help="the token's id (token list shows it)")
    ns = p.parse_args(args)
    store = open_store(ns.store, create=ns.action == "create")
    if ns.action == "create":
        token, rec = store.token_create(ns.name, ns.scope)
        _out(token + "\n")
        _err(f"token {rec.id} ({rec.scope}) made: it is shown this once")
    elif ns.action == "list":
        for rec in store.tokens():
            state = "revoked " + _when(rec.revoked) if rec.revoked else "active"
            _out(f"{rec.id}  {rec.scope:5}  {state:26}  {_when(rec.created)}  {rec.name}\n")
    else:
        rec = store.token_revoke(ns.id)
        _out(f"token {rec.id} revoked\n")
    return EXIT_OK


def _when(t: float | None) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def cmd_tasks(args: list[str], store_path: str | None) -> int:
    """flowmetal tasks: the table of tasks."""
    from .store.tables import TaskFilter

    p = _parser("tasks", "List the tasks of the store, oldest first: every unfinished "
                f"task and the {RECENT_FINISHED} finished (done, failed, cancelled or "
                "moved) ones updated last; with a filter or --limit, every matching task "
                "(a page of --limit after --after).", store_path)
    p.add_argument("--all", action="store_true", help="list every task")
    p.add_argument("--status", action="append", default=[], metavar="STATUS",
                   choices=TASK_STATUSES,
                   help="only tasks of this status (runnable, waiting, done, failed, "
                   "cancelled, moved); may be given again")
    p.add_argument("--name", help="only tasks of this name (a program's file name)")
    p.add_argument("--program", metavar="HASH", help="only tasks of this program (a prefix "
                   "of its hash)")
    p.add_argument("--parent", metavar="ID", help="only tasks spawned by this task")
    p.add_argument("--id", metavar="PREFIX", help="only tasks whose id starts so")
    p.add_argument("--limit", type=int, metavar="N", help="at most N tasks")
    p.add_argument("--after", metavar="ID", default="", help="tasks after this id (paging)")
    p.add_argument("--json", action="store_true", help="print JSON")
    ns = p.parse_args(args)
    from .runtime import inspect

    store = open_store(ns.store, create=False)
    parent = None
    if ns.parent is not None:
        from .runtime import api  # (only here: listing needs no language)

        parent = api.find_task(store, ns.parent)
    where = TaskFilter(status=tuple(ns.status), name=ns.name, program=ns.program,
                       parent=parent, id_prefix=ns.id)
    filtered = where != TaskFilter() or ns.limit is not None or ns.after
    with store.view() as view:
        records = view.tasks(where, ns.after, ns.limit if ns.limit is not None else 1 << 62)
        skipped = view.skipped
        now = view.clock()
    hidden = 0
    if not ns.all and not filtered:
        finished = sorted((r for r in records if r.finished), key=lambda r: r.updated)
        dropped = {r.id for r in finished[:-RECENT_FINISHED]} if \
            len(finished) > RECENT_FINISHED else set()
        hidden = len(dropped)
        records = [r for r in records if r.id not in dropped]
    rows = [inspect.task_summary(rec, now) for rec in records]
    if ns.json:
        _print_json(rows)
    elif not rows:
        _out(f"no tasks in {store.path}\n")
    else:
        table = [("ID", "PROGRAM", "STATUS", "AGE", "WAITING ON")]
        table += [(r["id"], r["name"], inspect.state_word(r), _age(r["age_seconds"]),
                   _waiting_column(r, now)) for r in rows]
        _out(_table(table))
    if hidden and not ns.json:
        _out(f"({hidden} older finished tasks not listed: flowmetal tasks --all)\n")
    if skipped:
        _err(f"flowmetal: {skipped} task records could not be read (flowmetal show ID "
             "says why)")
    return EXIT_OK


def cmd_show(args: list[str], store_path: str | None) -> int:
    """flowmetal show ID: one task in detail."""
    p = _parser("show", "Show a task: status, result or error, limits, counts, and its "
                "continuation's frames (innermost first) with their source and local "
                "variables.", store_path)
    p.add_argument("id", metavar="ID", help="the task's id (flowmetal tasks lists them)")
    p.add_argument("--json", action="store_true", help="print JSON")
    ns = p.parse_args(args)
    from .runtime import api, inspect

    store = open_store(ns.store, create=False)
    detail = inspect.task_detail(store, api.find_task(store, ns.id))
    if ns.json:
        _print_json(detail)
    else:
        _out(_detail_text(detail))
    return EXIT_OK


def cmd_log(args: list[str], store_path: str | None) -> int:
    """flowmetal log ID: the task's events."""
    from .runtime import api, inspect

    p = _parser("log", "Print a task's event log: sequence number, time, kind and "
                "details of each event (requests, answers, messages, the end).", store_path)
    p.add_argument("id", metavar="ID", help="the task's id (flowmetal tasks lists them)")
    p.add_argument("--json", action="store_true", help="print JSON")
    ns = p.parse_args(args)
    store = open_store(ns.store, create=False)
    task_id = api.find_task(store, ns.id)
    with store.view() as view:
        events = [inspect.log_entry(seq, event) for seq, event in view.log(task_id)]
    if ns.json:
        _print_json(events)
        return EXIT_OK
    rows = [("SEQ", "TIME", "KIND", "DETAILS")]
    for e in events:
        details = " ".join(f"{k}={_cut(_short(k, v), 200)}"
                           for k, v in e["details"].items() if v is not None)
        rows.append((str(e["seq"]), _when(e["at"], True), e["kind"], details))
    _out(_table(rows))
    return EXIT_OK


def cmd_output(args: list[str], store_path: str | None) -> int:
    """flowmetal output ID [-f]: what the task printed."""
    from .runtime import api

    p = _parser("output", "Print what a task has printed, as its steps committed it. With "
                "-f, go on printing its output as it commits, until the task ends (exit "
                "status as for run: 0 done, 1 failed or cancelled, its error on stderr).",
                store_path)
    p.add_argument("id", metavar="ID", help="the task's id (flowmetal tasks lists them)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="follow the output until the task ends")
    ns = p.parse_args(args)
    store = open_store(ns.store, create=False)
    task_id = api.find_task(store, ns.id)
    seen = 0
    with stop_signals() as stopped:
        while True:
            with store.view() as view:
                rec = view.task(task_id)
                for seq, text in view.output(task_id, seen):
                    write_stdout(text)
                    seen = seq
            if not ns.follow:
                return EXIT_OK
            if rec is None or rec.finished:
                break
            if stopped():
                return EXIT_INTERRUPTED
            time.sleep(FOLLOW_POLL)
    if rec is None:
        _err(f"flowmetal: task {task_id} was removed")
        return EXIT_ERROR
    return report_end(rec)


FOLLOW_POLL = 0.1  # seconds between looks at a followed task's output


def cmd_rm(args: list[str], store_path: str | None) -> int:
    """flowmetal rm ID...: delete finished tasks."""
    from .runtime import api

    p = _parser("rm", "Delete finished tasks (done, failed, cancelled or moved) from the "
                "store, with their logs, output and inboxes. An unfinished task must be "
                "cancelled first. Deletes all or none.", store_path)
    p.add_argument("ids", metavar="ID", nargs="+",
                   help="the tasks' ids (flowmetal tasks lists them)")
    ns = p.parse_args(args)
    store = open_store(ns.store, create=False)
    ids = list(dict.fromkeys(api.find_task(store, text) for text in ns.ids))
    for rec in api.remove(store, ids):
        _out(f"removed task {rec.id} ({rec.name}, {rec.status})\n")
    return EXIT_OK


PRUNE_STATUSES = ("done", "failed", "cancelled", "moved")


def cmd_prune(args: list[str], store_path: str | None) -> int:
    """flowmetal prune --done --older-than 7d: delete long-finished tasks."""
    from .quantities import QuantityError, parse_duration
    from .runtime import api

    p = _parser("prune", "Delete the finished tasks of the statuses given that ended more "
                "than --older-than ago, with their logs, output and inboxes. A task whose "
                "parent has not finished is kept: its parent may still join it.",
                store_path)
    for status in PRUNE_STATUSES:
        p.add_argument(f"--{status}", action="store_true", help=f"delete {status} tasks")
    p.add_argument("--finished", action="store_true",
                   help="delete tasks of every finished status (as all four above)")
    p.add_argument("--older-than", metavar="AGE", default="0s",
                   help="only tasks that ended longer ago than AGE, e.g. 7d, 12h, 30m "
                   "(default 0s: all of them)")
    ns = p.parse_args(args)
    statuses = tuple(s for s in PRUNE_STATUSES if ns.finished or getattr(ns, s))
    if not statuses:
        p.error("say which tasks: --done, --failed, --cancelled, --moved or --finished")
    try:
        older_than = parse_duration(ns.older_than, none_ok=False)
    except QuantityError as exc:
        p.error(f"--older-than: {exc}")
    removed = api.prune(open_store(ns.store, create=False), statuses, older_than)
    _out(f"removed {len(removed)} {' or '.join(statuses)} tasks that ended more than "
         f"{ns.older_than} ago\n")
    return EXIT_OK


def cmd_send(args: list[str], store_path: str | None) -> int:
    """flowmetal send ID FORM: a message from outside."""
    from .reader import read_one
    from .runtime import api

    p = _parser("send", "Put FORM (Flowmetal data, read, not evaluated) in a task's "
                "inbox; a receive waiting for it wakes.", store_path)
    p.add_argument("id", metavar="ID", help="the task's id (flowmetal tasks lists them)")
    p.add_argument("form", metavar="FORM", help="the message, e.g. '[:ok 42]'")
    ns = p.parse_args(args)
    try:
        message = read_one(utf8_argument(ns.form, "FORM"), "<send>")
    except FlowmetalError as exc:
        _err(format_source_error(exc, "<send>"))
        return EXIT_USAGE
    store = open_store(ns.store, create=False)
    task_id = api.find_task(store, ns.id)
    seq = api.send(store, task_id, message)
    with store.view() as view:
        rec = view.task(task_id)
        queued = any(s == seq for s, _ in view.inbox(task_id))
    answer = rec.answer
    if answer is not None and answer.kind == "message" and answer.seq == seq:
        _out(f"message {seq} sent to task {task_id}: it wakes the receive waiting for it\n")
    elif queued:
        _out(f"message {seq} queued in the inbox of task {task_id} ({rec.status})\n")
    else:  # (a worker ran the task on it already)
        _out(f"message {seq} sent to task {task_id}: taken by its receive (the task is "
             f"{rec.status} now)\n")
    return EXIT_OK


def cmd_cancel(args: list[str], store_path: str | None) -> int:
    """flowmetal cancel ID."""
    from .runtime import api

    p = _parser("cancel", "Cancel a task: a {:type :cancelled} error is raised where it "
                "stands (at once if it waits), and it ends cancelled unless it catches "
                "the error.", store_path)
    p.add_argument("id", metavar="ID", help="the task's id (flowmetal tasks lists them)")
    ns = p.parse_args(args)
    store = open_store(ns.store, create=False)
    rec = api.cancel(store, api.find_task(store, ns.id))
    if rec.cancel_delivered:
        _out(f"task {rec.id} cancelled: its wait raised {{:type :cancelled}} (it ends "
             "cancelled unless it catches that)\n")
    else:
        _out(f"task {rec.id} asked to cancel: {{:type :cancelled}} is raised at its next "
             "step (it ends cancelled unless it catches that)\n")
    return EXIT_OK


def cmd_export(args: list[str], store_path: str | None) -> int:
    """flowmetal export ID: one file holding the task; it is marked moved here."""
    from .runtime import api
    from .runtime.migrate import export_task

    p = _parser("export", "Write a task (its program, continuation, inbox, output and "
                "log) to one file, and mark it moved in this store so it never runs "
                "here again. A task a live worker is running cannot move: stop the "
                "worker first.", store_path)
    p.add_argument("id", metavar="ID", help="the task's id (flowmetal tasks lists them)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write to FILE instead of standard output")
    ns = p.parse_args(args)
    store = open_store(ns.store, create=False)
    ns.id = api.find_task(store, ns.id)
    try:
        if ns.output is None:
            if sys.stdout.isatty():
                raise UsageError("export: the export is binary: redirect it (flowmetal "
                                 "export ID > task.fmt) or use -o FILE", p.format_usage())
            _flush_stdout()
            export_task(store, ns.id, _synced_writer(sys.stdout.buffer))
        else:
            with open(ns.output, "wb") as out:
                try:
                    export_task(store, ns.id, _synced_writer(out))
                except BaseException:
                    out.close()
                    os.unlink(ns.output)
                    raise
    except BrokenPipeError:
        raise OutputClosed from None
    _err(f"flowmetal: task {ns.id} exported; it is marked moved in {store.path}")
    return EXIT_OK


def _synced_writer(stream: Any) -> Callable[[bytes], None]:
    """Write and flush to ``stream``, and sync it to disk when it is a file: the export
    must be safe before the store commits the task's move."""
    def write(data: bytes) -> None:
        stream.write(data)
        stream.flush()
        try:
            os.fsync(stream.fileno())
        except OSError:
            pass  # a pipe: nothing to sync

    return write


def cmd_import(args: list[str], store_path: str | None) -> int:
    """flowmetal import FILE: add an exported task; print its id."""
    from .runtime.migrate import import_task

    p = _parser("import", "Add a task exported from another store (flowmetal export) to "
                "this one, runnable or waiting as it was; a worker or flowmetal resume "
                "then finishes it. Prints the task's id.", store_path)
    p.add_argument("file", help='the export file ("-" for standard input)')
    ns = p.parse_args(args)
    try:
        if ns.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(ns.file, "rb") as f:
                data = f.read()
    except OSError as exc:
        _err(f"flowmetal: cannot read {ns.file}: {exc.strerror or exc}")
        return EXIT_USAGE
    rec = import_task(open_store(ns.store), data)
    _out(rec.id + "\n")
    return EXIT_OK


def cmd_deploy(args: list[str], store_path: str | None) -> int:
    """flowmetal deploy FILE.fm [NAME]: store a program for spawn by name."""
    from .runtime import api

    p = _parser("deploy", "Store a program (with what it spawns by literal names) in the "
                "program store under NAME (default: the file's name), so that (spawn "
                "\"NAME\" ...) runs it in whichever worker runs the step. Prints its hash.",
                store_path)
    p.add_argument("file", metavar="FILE.fm")
    p.add_argument("name", metavar="NAME", nargs="?")
    ns = p.parse_args(args)
    text = _read_program(ns.file)
    if text is None:
        return EXIT_USAGE
    store = open_store(ns.store)
    try:
        digest = api.deploy(store, text, ns.file, ns.name or os.path.basename(ns.file))
    except FlowmetalError as exc:
        _err(format_source_error(exc, ns.file))
        return EXIT_USAGE
    _out(digest + "\n")
    return EXIT_OK


def cmd_upgrade(args: list[str], store_path: str | None) -> int:
    """flowmetal upgrade ID [--to FILE.fm] [--dry-run]: move a task onto new code."""
    from .runtime import api

    p = _parser("upgrade", "Move an unfinished task onto new code: this Flowmetal's "
                "standard library and, with --to, a new version of its program. It is "
                "done only when every frame of the task's continuation maps onto an "
                "unchanged definition of the new code; otherwise nothing changes and the "
                "report names the frames that cannot map.", store_path)
    p.add_argument("id", metavar="ID")
    p.add_argument("--to", metavar="FILE.fm", help="the new version of the task's program")
    p.add_argument("--dry-run", action="store_true", help="only print the report")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    ns = p.parse_args(args)
    source = None
    if ns.to is not None:
        source = _read_program(ns.to)
        if source is None:
            return EXIT_USAGE
    store = open_store(ns.store, create=False)
    ns.id = api.find_task(store, ns.id)
    try:
        if ns.dry_run:
            plan = api.plan_upgrade(store, ns.id, source, ns.to)[0]
        else:
            plan = api.upgrade(store, ns.id, source, ns.to)
    except FlowmetalError as exc:
        _err(format_source_error(exc, ns.to or "<upgrade>"))
        return EXIT_USAGE
    if ns.json:
        _print_json(plan.to_json())
    else:
        _out(plan.report() + "\n")
        if plan.ok and not ns.dry_run:
            _out(f"task {ns.id} moved onto the new code\n")
    return EXIT_OK if plan.ok else EXIT_ERROR


def cmd_shipyard(args: list[str], store_path: str | None) -> int:
    """flowmetal shipyard apply FILE | show | list: the projects' shipyards."""
    from .sequences import shipyards
    from .sequences.shipyard import ShipyardError, parse_shipyard, shipyard_yaml

    p = _parser("shipyard", "Store a project's shipyard (Keptn's spec.keptn.sh/0.2.x YAML: "
                "stages, their sequences and tasks) as its next version, show a version, "
                "list the projects. A run keeps the version it started with.", store_path)
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = sub.add_parser("apply", help="check FILE and store it as the next version")
    apply.add_argument("file", metavar="FILE")
    apply.add_argument("--project", help="the project (default: the file's metadata.name)")
    show = sub.add_parser("show", help="print a version of a project's shipyard as YAML")
    show.add_argument("--project", help="the project (default: the only one)")
    show.add_argument("--version", type=int, help="the version (default: the latest)")
    sub.add_parser("list", help="the projects, their latest versions and stages")
    ns = p.parse_args(args)
    if ns.action == "apply":
        try:
            with open(ns.file, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            _err(f"flowmetal: cannot read {ns.file}: {exc.strerror or exc}")
            return EXIT_USAGE
        except UnicodeDecodeError:
            _err(_not_utf8(ns.file))
            return EXIT_ERROR
        try:
            shipyard = parse_shipyard(text.removeprefix("\ufeff"), ns.file)
            project = shipyards.check_project(ns.project or shipyard.name)
        except ShipyardError as exc:
            _err(str(exc))
            return EXIT_ERROR
        except ValueError as exc:
            raise UsageError(f"--project: {exc}", apply.format_usage()) from None
        store = open_store(ns.store)
        before = shipyards.versions(store, project)
        version = shipyards.apply_shipyard(store, shipyard, project)
        _out(f"project {project}: shipyard version {version}"
             f"{' (unchanged)' if version == before else ''}\n")
        return EXIT_OK
    store = open_store(ns.store, create=False)
    names = shipyards.projects(store)
    if ns.action == "list":
        rows = [("PROJECT", "VERSION", "STAGES")]
        for name in names:
            version, shipyard = shipyards.current_shipyard(store, name) or (0, None)
            rows.append((name, str(version),
                         ", ".join(s.name for s in shipyard.stages) if shipyard else ""))
        _out(_table(rows) if names else "no shipyards (flowmetal shipyard apply FILE)\n")
        return EXIT_OK
    project = ns.project
    if project is None:
        if len(names) != 1:
            raise UsageError("shipyard show: give --project (the store has "
                             f"{'no shipyards' if not names else ', '.join(names)})",
                             show.format_usage())
        project = names[0]
    if ns.version is None:
        found = shipyards.current_shipyard(store, project)
        shipyard = found[1] if found else None
    else:
        shipyard = shipyards.shipyard_version(store, project, ns.version)
    if shipyard is None:
        count = shipyards.versions(store, project)
        _err(f"flowmetal: project {project} has " + (
            f"no version {ns.version} of its shipyard (versions 1 to {count})" if count
            else "no shipyard (flowmetal shipyard list)"))
        return EXIT_USAGE
    _out(shipyard_yaml(shipyard))
    return EXIT_OK


def cmd_store(args: list[str], store_path: str | None) -> int:
    """flowmetal store init | store copy SRC DST."""
    from .store import StoreError, is_url
    from .store import open_store as open_location
    from .store.engine import copy_store

    usage = ("usage: flowmetal store init [--store DIR|URL]\n"
             "       flowmetal store copy SRC DST\n")
    if not args or args[0] in ("-h", "--help"):
        _out(usage + "  init  create the store, or migrate a PostgreSQL store's schema to "
             "this Flowmetal's version\n  copy  copy every program and task of the store "
             "SRC into the empty store DST (each a directory or a postgresql:// URL);\n"
             "        run it while no worker uses SRC\n")
        return EXIT_OK
    if args[0] == "init":
        p = _parser("store init", "Create the store, or migrate a PostgreSQL store's "
                    "schema to this Flowmetal's version (refusing a newer one).", store_path)
        ns = p.parse_args(args[1:])
        from .store import default_path, is_server

        location = ns.store or os.environ.get("FLOWMETAL_SERVER") or default_path()
        if is_server(location):
            raise StoreError(needs_store_itself("store init", location))
        if is_url(location):
            from .store.postgres import SCHEMA_VERSION, init_schema

            version = init_schema(location)
            _out(f"store {location}: schema version {version} (this Flowmetal: "
                 f"{SCHEMA_VERSION})\n")
        else:
            store = open_location(location)
            _out(f"store {store.location}: ready\n")
        return EXIT_OK
    if args[0] == "copy":
        if len(args) != 3:
            raise UsageError("store copy needs SRC and DST", usage)
        from .store import is_server

        for location in args[1:]:
            if is_server(location):
                raise StoreError(needs_store_itself("store copy", location))
        src = open_location(args[1], create=False)
        dst = open_location(args[2])
        count = copy_store(src, dst)
        _out(f"{count} task{'' if count == 1 else 's'} copied from {src.location} to "
             f"{dst.location}\n")
        return EXIT_OK
    raise UsageError(f"unknown store command {args[0]}", usage)


def cmd_evaluate(args: list[str], store_path: str | None) -> int:
    """flowmetal evaluate SLO.yaml: judge SLI values by an SLO file, as Keptn does."""
    p = _parser_class()(prog="flowmetal evaluate", description="Evaluate SLI values against an SLO "
                "file (Keptn's slo.yaml) and print the evaluation as JSON: result (pass, "
                "warning, fail), score and indicatorResults.")
    p.add_argument("slo", metavar="SLO.yaml", help="the SLO file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--values", metavar="VALUES.json",
                        help="the SLI values: a JSON object of SLI name to number")
    source.add_argument("--prometheus", metavar="URL",
                        help="ask this Prometheus server for the values (with --sli)")
    p.add_argument("--previous", metavar="PREVIOUS.json", help="earlier evaluations, oldest "
                   "first: a JSON array of {\"result\": ..., \"values\": {SLI: number}}")
    p.add_argument("--sli", metavar="SLI.yaml", help="the SLI file: each SLI's query")
    p.add_argument("--start", metavar="T", help="start of the time range (ISO 8601, UTC unless "
                   "it gives an offset, or Unix seconds; default: 5 minutes before the end)")
    p.add_argument("--end", metavar="T", help="end of the time range (default: now)")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="replace $NAME in the queries (e.g. PROJECT=shop); repeatable")
    ns = p.parse_args(args)
    if ns.prometheus is None and (ns.sli or ns.start or ns.end or ns.var):
        p.error("--sli, --start, --end and --var go with --prometheus")
    if ns.prometheus is not None and ns.sli is None:
        p.error("--prometheus needs --sli SLI.yaml")
    variables = dict(v.partition("=")[::2] for v in ns.var)
    if any(not name for name in variables) or any("=" not in v for v in ns.var):
        p.error("--var takes NAME=VALUE")
    from .sequences import evaluation, slo

    try:
        objectives = slo.parse_slo(_text_of(ns.slo), ns.slo)
        previous = []
        if ns.previous is not None:
            items = _json_of(ns.previous)
            if not isinstance(items, list):
                raise evaluation.EvaluationError("earlier evaluations are a JSON array")
            previous = [evaluation.previous_from_json(item, str(i))
                        for i, item in enumerate(items)]
        if ns.values is not None:
            values = evaluation.values_from_json(_json_of(ns.values))
        else:
            values = _prometheus_values(ns, slo.parse_sli(_text_of(ns.sli), ns.sli),
                                        {**objectives.filter, **variables})
    except (OSError, ValueError, slo.SLOError, evaluation.EvaluationError) as exc:
        _err(f"flowmetal evaluate: {exc}")
        return EXIT_ERROR
    result = evaluation.evaluate(objectives, values, previous)
    _print_json(evaluation.evaluation_to_json(result))
    return EXIT_OK


def _text_of(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise OSError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _json_of(path: str) -> Any:
    import json

    text = _text_of(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None


def _prometheus_values(ns: argparse.Namespace, indicators: dict[str, str],
                       variables: dict[str, str]) -> dict[str, float | None]:
    """The SLI values from ``--prometheus`` over ``--start``/``--end``."""
    import asyncio

    import aiohttp

    from .sequences.prometheus import PrometheusError, query_values

    end = _instant(ns.end, "--end") if ns.end else time.time()
    start = _instant(ns.start, "--start") if ns.start else end - 300
    if start >= end:
        raise ValueError("--start must be before --end")

    async def ask() -> dict[str, float | None]:
        async with aiohttp.ClientSession() as session:
            return await query_values(ns.prometheus, indicators, start, end, session,
                                      variables=variables)

    try:
        return asyncio.run(ask())
    except PrometheusError as exc:
        raise ValueError(str(exc)) from None


def _instant(text: str, option: str) -> float:
    """ISO 8601 or Unix seconds as Unix seconds."""
    from datetime import UTC, datetime

    with suppress(ValueError):
        if math.isfinite(seconds := float(text)):
            return seconds
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r}: not an ISO 8601 time or Unix seconds") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def cmd_trigger(args: list[str], store_path: str | None) -> int:
    """flowmetal trigger STAGE.SEQUENCE [--data JSON]."""
    import json

    from .sequences import client
    from .sequences.events import EventError
    from .sequences.runs import RunError

    p = _parser("trigger", "Start a run of a sequence of the project's shipyard, as the "
                "event sh.keptn.event.STAGE.SEQUENCE.triggered would: a durable task that "
                "waits its turn behind the runs of the same stage and service, then hands "
                "the sequence's tasks to the workers serving them.", store_path)
    p.add_argument("sequence", metavar="STAGE.SEQUENCE", help="e.g. dev.delivery")
    p.add_argument("--data", default="{}", metavar="JSON", help="the event's data: a JSON "
                   "object (project, service, labels ...)")
    p.add_argument("--project", help="the project (default: data.project, or the only one)")
    p.add_argument("--context", help="the shkeptncontext grouping the run's events "
                   "(default: a new one)")
    ns = p.parse_args(args)
    stage, dot, sequence = ns.sequence.partition(".")
    if not dot or not stage or not sequence or "." in sequence:
        raise UsageError(f"{ns.sequence!r}: say STAGE.SEQUENCE, e.g. dev.delivery",
                         p.format_usage())
    try:
        data = json.loads(ns.data)
    except ValueError as exc:
        raise UsageError(f"--data: not JSON: {exc}", p.format_usage()) from None
    if type(data) is not dict:
        raise UsageError("--data must be a JSON object", p.format_usage())
    if ns.project:
        data["project"] = ns.project
    store = open_store(ns.store, create=False)
    try:
        started = client.trigger(store, stage, sequence, data, ns.context)
    except (RunError, EventError) as exc:
        _err(f"flowmetal trigger: {exc}")
        return EXIT_ERROR
    _out(f"run {started['task']} of {ns.sequence} (project {started['project']}, context "
         f"{started['keptnContext']})\n")
    return EXIT_OK


def cmd_sequences(args: list[str], store_path: str | None) -> int:
    """flowmetal sequences [pause|resume|abort ID]."""
    from .sequences import client

    p = _parser("sequences", "The latest sequence runs, what each waits on (a worker, its "
                "turn behind another run, a resume), and the task types no worker serves; "
                "or pause, resume or abort a run.", store_path)
    p.add_argument("action", nargs="?", choices=("pause", "resume", "abort"),
                   help="pause (at once: its task in flight is withdrawn and offered again "
                   "on resume), resume, or abort (cancel) the run ID")
    p.add_argument("id", nargs="?", metavar="ID", help="the run's task id")
    p.add_argument("--json", action="store_true", help="print the listing as JSON")
    ns = p.parse_args(args)
    store = open_store(ns.store, create=False)
    if ns.action is not None:
        if ns.id is None:
            raise UsageError(f"{ns.action} needs the run's ID", p.format_usage())
        from .runtime import api

        task_id = ns.id if not hasattr(store, "transact") else api.find_task(store, ns.id)
        done = client.control(store, task_id, ns.action)
        _out(f"run {done['task']}: {ns.action} asked ({done['status']})\n")
        return EXIT_OK
    listing = client.listing(store)
    if ns.json:
        import json

        _out(json.dumps(listing, indent=2) + "\n")
        return EXIT_OK
    for warning in listing["warnings"]:
        _err(f"warning: {warning}")
    rows = [("RUN", "SEQUENCE", "SERVICE", "STATE", "WAITING ON")]
    for run in listing["runs"]:
        rows.append((run["task"], f"{run['stage']}.{run['sequence']}", run["service"],
                     run["state"], run["detail"]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        _out("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4]
             + "\n")
    if len(rows) == 1:
        _out("(no runs yet: flowmetal trigger STAGE.SEQUENCE starts one)\n")
    return EXIT_OK


TASK_STATUSES = ("runnable", "waiting", "done", "failed", "cancelled", "moved")

COMMANDS: dict[str, Callable[[list[str], str | None], int]] = {
    "repl": cmd_repl, "attach": cmd_attach,
    "run": cmd_run, "resume": cmd_resume, "start": cmd_start, "worker": cmd_worker,
    "connector": cmd_connector, "serve": cmd_serve, "token": cmd_token,
    "tasks": cmd_tasks, "show": cmd_show, "log": cmd_log, "send": cmd_send,
    "cancel": cmd_cancel, "export": cmd_export, "import": cmd_import,
    "output": cmd_output, "rm": cmd_rm, "prune": cmd_prune,
    "deploy": cmd_deploy, "upgrade": cmd_upgrade, "store": cmd_store,
    "evaluate": cmd_evaluate, "shipyard": cmd_shipyard,
    "trigger": cmd_trigger, "sequences": cmd_sequences,
}


# ---------------------------------------------------------------------------------------
# The listings as text (runtime/inspect.py gives them as data)


def _waiting_column(summary: dict, now: float) -> str:
    """The WAITING ON column of ``flowmetal tasks``."""
    from .runtime import inspect

    if summary["blocked"] and not summary["running"]:
        return f"code: {summary['blocked']}"
    return inspect.waiting_on(summary, now)


def _limits_text(limits: dict) -> str:
    from .quantities import duration_text, size_text

    fuel, depth = limits["fuel_reductions"], limits["depth_frames"]
    return ", ".join([
        f"fuel {'none' if fuel is None else f'{fuel:,} reductions'}",
        f"depth {depth:,} frames", f"state {size_text(limits['state_bytes'])}",
        f"deadline {duration_text(limits['deadline_seconds'])}",
        f"wait {duration_text(limits['wait_seconds'])} (waits without :timeout)",
        f"HTTP response body {size_text(limits['response_body_bytes'])}"])


def _detail_text(d: dict) -> str:
    """``flowmetal show``'s text for a task's detail."""
    from .runtime import inspect

    status = inspect.state_text(d)
    if d["cancel"] and d["status"] not in ("cancelled",):
        status += " (cancel requested)"
    lines = [f"task {d['id']} ({d['name']})",
             f"  status      {status}",
             f"  program     {d['file'] or '?'} ({d['program'][:12]})",
             f"  created     {_when(d['created'])} ({_age(d['age_seconds'])} ago), "
             f"updated {_when(d['updated'])}",
             f"  steps       {d['steps']} ({d['reductions']} reductions), state "
             f"{d['state_bytes']} bytes, inbox {d['inbox']} messages",
             "  limits      " + _limits_text(d["limits"])]
    if d["parent"]:
        lines.append(f"  parent      {d['parent']}")
    if d["children"]:
        lines.append(f"  children    {' '.join(d['children'])}")
    if d["request"]:
        lines.append(f"  request     {d['request']}")
    if d["result"] is not None:
        lines.append(f"  result      {d['result']}")
    if d["error_text"] is not None:
        first, *rest = d["error_text"].splitlines()
        lines.append(f"  error       {first}")
        lines += [f"            {line}" for line in rest]
    if d["frames_error"]:
        lines.append(f"  state       cannot be read: {d['frames_error']}")
    if not d["frames"] and d["status"] == "runnable" and d["steps"] == 0:
        lines.append("continuation: not started yet")
    if d["frames"]:
        lines.append("continuation, innermost first:")
        for i, f in enumerate(d["frames"]):
            if f["kind"] == "more":
                lines.append(f"  ... {f['count']} more frames")
                continue
            where = f" at {f['file']}:{f['line']}:{f['col']}" if f["file"] else ""
            lines.append(f"  #{i} {f['proc']}{where}")
            if f["source"] is not None:
                lines.append(f"       | {f['source'].strip()}")
            for b in f["bindings"]:
                lines.append(f"       {b['name']} = {_cut(b['value'], 100)}")
    return "\n".join(lines) + "\n"


def _short(key: str, value: Any) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value)
    return text[:12] if key == "program" else text


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n"
                   for row in rows)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _when(at: float | None, precise: bool = False) -> str:
    if at is None:
        return "?"
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    return text + f".{int(at * 1000) % 1000:03d}" if precise else text


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _print_json(data: Any) -> None:
    import json

    _out(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------
# Output


def write_stdout(text: str) -> None:
    """Write program output to stdout at once, so it shows while the program runs."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise OutputClosed from None


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _flush_stdout() -> None:
    with suppress(OSError, ValueError):
        sys.stdout.flush()


def _detach_stdout() -> None:
    # Point stdout at /dev/null so that the interpreter's flush at exit does not
    # complain about the closed pipe.
    with suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
