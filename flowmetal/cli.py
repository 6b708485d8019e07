"""The ``flowmetal`` command: run a script or evaluate an expression."""

from __future__ import annotations

import os
import sys
import traceback

from .interpreter import Session
from .printer import to_string
from .report import format_error, format_source_error
from .source import read_script
from .values import FlowmetalError, Vector, sym

USAGE = """\
usage: flowmetal FILE.fm [ARGS...]
       flowmetal run FILE.fm [ARGS...]
       flowmetal -e EXPR [ARGS...]
       flowmetal --help | --version"""

HELP = USAGE + """

Run a Flowmetal program.

  FILE.fm [ARGS...]   run the program in FILE.fm ("run" in front is optional);
                      the program sees ARGS as *command-line-args* (a vector of
                      strings) and the path as *file*
  -e, --eval EXPR     evaluate EXPR and print the value of its last form, unless
                      it is nil; ARGS after EXPR are *command-line-args*
  -h, --help          show this help and exit
  -V, --version       show the version and exit

A script whose first line is "#!/usr/bin/env flowmetal" can be run directly.
There is no interactive REPL yet: it is planned for a later release.

Exit status:
  0    the program finished
  1    an uncaught Flowmetal error (its backtrace is printed on stderr)
  2    a usage error, an unreadable file, or a read or syntax error in the source
  130  interrupted (Ctrl-C)
  141  standard output was closed (e.g. piped into head)

Set FLOWMETAL_TRACEBACK=1 to see the Python traceback of an internal error."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE

COMMAND_LINE_ARGS = sym("*command-line-args*")
FILE = sym("*file*")
EXPR_FILE = "<expr>"


class OutputClosed(BaseException):
    """Standard output was closed under us (e.g. piped into ``head``).

    A BaseException so that the machine, which turns Python exceptions raised inside
    primitives into catchable Flowmetal errors, lets it through and the run stops.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return dispatch(args)
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
            traceback.print_exc()
        _err(f"internal error: {type(exc).__name__}: {exc}")
        return EXIT_ERROR


def dispatch(args: list[str]) -> int:
    """Interpret the command-line arguments and do what they ask."""
    if not args:
        _err(USAGE)
        return EXIT_USAGE
    first = args[0]
    if first in ("-h", "--help"):
        _out(HELP + "\n")
        return EXIT_OK
    if first in ("-V", "--version"):
        _out(f"flowmetal {version()}\n")
        return EXIT_OK
    if first in ("-e", "--eval"):
        if len(args) < 2:
            return usage_error(f"{first} needs an expression")
        return run_source(args[1], EXPR_FILE, args[2:], script=None, print_value=True)
    if first == "run":
        if len(args) < 2:
            return usage_error("run needs a FILE")
        if args[1] in ("-h", "--help"):
            _out(HELP + "\n")
            return EXIT_OK
        return run_file(args[1], args[2:])
    if first.startswith("-"):
        return usage_error(f"unknown option {first}")
    return run_file(first, args[1:])


def version() -> str:
    """The installed version of Flowmetal."""
    from importlib import metadata  # only here: it is slow to import

    try:
        return metadata.version("flowmetal")
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def usage_error(message: str) -> int:
    """Report a usage error on stderr and return its exit status."""
    _err(f"flowmetal: {message}\n{USAGE}")
    return EXIT_USAGE


def run_file(path: str, args: list[str]) -> int:
    """Run the script at ``path`` with command-line arguments ``args``."""
    try:
        text = read_script(path)
    except OSError as exc:
        _err(f"flowmetal: cannot read {path}: {exc.strerror or exc}")
        return EXIT_USAGE
    except UnicodeDecodeError:
        _err(f"flowmetal: cannot read {path}: it is not UTF-8 text")
        return EXIT_USAGE
    return run_source(text, path, args, script=path, print_value=False)


def run_source(text: str, file: str, args: list[str], script: str | None,
               print_value: bool) -> int:
    """Load and run program ``text`` (named ``file`` in messages), streaming its output.

    ``script`` becomes ``*file*``; with ``print_value`` the final value is printed
    readably unless it is nil.
    """
    session = Session()
    session.globals[COMMAND_LINE_ARGS] = Vector(args)
    session.globals[FILE] = script
    try:
        program = session.load(text, file)
    except FlowmetalError as exc:
        # Read errors, syntax errors, and errors raised by macros during expansion.
        _err(format_source_error(exc, file))
        return EXIT_USAGE
    m = session.machine(program)
    m.write = write_stdout
    if m.run_to_end() == "error":
        _flush_stdout()
        _err(format_error(m.error))
        return EXIT_ERROR
    if print_value and m.val is not None:
        write_stdout(to_string(m.val) + "\n")
    return EXIT_OK


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
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def _detach_stdout() -> None:
    # Point stdout at /dev/null so that the interpreter's flush at exit does not
    # complain about the closed pipe.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
