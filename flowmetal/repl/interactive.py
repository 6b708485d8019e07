"""The REPL on a terminal, with prompt_toolkit.

Input is highlighted with ``FlowmetalLexer`` and the bracket matching the one at the
cursor is shown.  Enter runs the input when the reader finds it complete (so brackets in
strings and comments do not count) and the cursor is at its end; otherwise it opens a
new line, indented as Lisp code is.  Alt-Enter always opens a line.  Tab completes the
names bound in the session, keywords, meta-commands and (after ``,attach`` and friends)
task ids.  History is kept in a file (``$FLOWMETAL_HISTORY``, else
``~/.flowmetal_history``), searched with Ctrl-R (Enter runs the entry found, Esc puts it
in the input to edit) and offered as you type (Right accepts the suggestion).  The
bottom line shows the argument list of the procedure being called.  Ctrl-C clears the
input, or interrupts a running evaluation; Ctrl-D on an empty line leaves.
"""

from __future__ import annotations

import os
import re
import sys
import termios
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition, completion_is_selected, is_searching
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.layout.processors import HighlightMatchingBracketProcessor
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.patch_stdout import patch_stdout
from prompt_toolkit.search import accept_search
from prompt_toolkit.styles import Style
from pygments.token import Keyword, Punctuation

from ..reader import is_complete
from .commands import COMMANDS, is_command
from .describe import describe
from .evaluator import keyword_names
from .lexer import FlowmetalLexer
from .repl import Repl

# The characters of a name being typed (a symbol, or a keyword with its colon).
_WORD = re.compile(r"""[^\s,()\[\]{}";`~'@]*\Z""")
_HEAD = re.compile(r"""[\s,]*([^\s,()\[\]{}";`~'@#]+)""")
_TASK_COMMANDS = ("attach", "log", "send")
STYLE = Style.from_dict({
    "bottom-toolbar": "noreverse bg:#222222 #aaaaaa",
    "bottom-toolbar.signature": "bold #ffffff",
})


def history_file() -> History:
    """The REPL's history: ``$FLOWMETAL_HISTORY`` or ``~/.flowmetal_history`` (kept in
    memory when neither can be written)."""
    path = os.environ.get("FLOWMETAL_HISTORY") or os.path.join(
        os.path.expanduser("~"), ".flowmetal_history")
    try:
        open(path, "a", encoding="utf-8").close()  # can it be written?
    except OSError:
        return InMemoryHistory()
    return FileHistory(path)


class FlowmetalCompleter(Completer):
    """Completes meta-commands, task ids after the task commands, keywords, and the
    names bound in the REPL's session (with what each is)."""

    def __init__(self, repl: Repl):
        self.repl = repl

    def get_completions(self, document: Document, complete_event: CompleteEvent
                        ) -> Iterable[Completion]:
        """The completions of the word before the cursor."""
        before = document.text_before_cursor
        stripped = before.lstrip()
        if is_command(stripped) or stripped == ",":
            name, space, rest = stripped[1:].partition(" ")
            if not space:
                for cmd in COMMANDS.values():
                    if cmd.name.startswith(name):
                        yield Completion("," + cmd.name, -len(name) - 1,
                                         display_meta=cmd.help)
                return
            if name in _TASK_COMMANDS and " " not in rest:
                yield from self._task_ids(rest)
                return
        word = _WORD.search(before).group()
        if not word:
            return
        if word.startswith(":"):
            for name in keyword_names():
                if name.startswith(word[1:]):
                    yield Completion(":" + name, -len(word))
            return
        names = self.repl.evaluator.names()
        for name in sorted(names):
            if name.startswith(word):
                yield Completion(name, -len(word), display_meta=names[name])

    def _task_ids(self, prefix: str) -> Iterable[Completion]:
        try:
            with self.repl.store().view() as view:
                records = view.tasks(limit=1 << 62)
        except Exception:  # no store yet: nothing to complete
            return
        for rec in reversed(records):
            if rec.id.startswith(prefix):
                yield Completion(rec.id, -len(prefix), display_meta=f"{rec.name} {rec.status}")


def open_brackets(text: str) -> list[tuple[str, int, int]]:
    """The brackets still open at the end of ``text``, outermost first, as (bracket,
    offset, column), ignoring those in strings and comments."""
    stack: list[tuple[str, int, int]] = []
    line_start = 0
    for pos, kind, part in FlowmetalLexer().get_tokens_unprocessed(text):
        if kind is Punctuation and part in ("(", "[", "{", "#{"):
            stack.append((part, pos, pos - line_start))
        elif kind is Punctuation and part in (")", "]", "}") and stack:
            stack.pop()
        newline = part.rfind("\n")
        if newline >= 0:
            line_start = pos + newline + 1
    return stack


def indentation(text: str) -> int:
    """The column a new line after ``text`` starts at: under the first argument of the
    innermost open call, 2 in from the bracket of a special form or macro, 1 in from a
    vector's or map's bracket, 0 outside any form."""
    stack = open_brackets(text)
    if not stack:
        return 0
    bracket, offset, column = stack[-1]
    if bracket != "(":
        return column + len(bracket)
    tokens = [(pos, kind, part) for pos, kind, part in
              FlowmetalLexer().get_tokens_unprocessed(text[offset + 1:])]
    words = [(pos, kind, part) for pos, kind, part in tokens if not part.isspace()]
    if not words:
        return column + 1
    head_pos, head_kind, head = words[0]
    if head_kind in Keyword:
        return column + 2
    if len(words) > 1 and "\n" not in text[offset + 1:offset + 1 + words[1][0]]:
        return column + 1 + words[1][0]
    return column + 1


def signature(repl: Repl, text: str) -> str:
    """The argument lists of the procedure or macro whose call ends ``text`` (the text
    before the cursor), or ""."""
    for bracket, offset, _ in reversed(open_brackets(text)):
        if bracket != "(":
            continue
        head = _HEAD.match(text, offset + 1)
        if head is None:
            return ""
        lines = describe(repl, head.group(1))
        if lines[0][1] == "error":
            return ""
        args = [line.strip() for line, style in lines if style == "signature"]
        if args:
            return "  ".join(args)
        return lines[1][0].strip() if len(lines) > 1 else lines[0][0]
    return ""


def key_bindings(repl: Repl) -> KeyBindings:
    """Enter runs complete input (else opens an indented line); Alt-Enter opens a line."""
    kb = KeyBindings()

    @Condition
    def at_end_of_complete_input() -> bool:
        from prompt_toolkit.application import get_app

        buf = get_app().current_buffer
        text = buf.text
        if not text.strip() or is_command(text) and "\n" not in text:
            return True
        return not buf.document.text_after_cursor.strip() and is_complete(text)

    editing = ~completion_is_selected & ~is_searching

    @kb.add("enter", filter=editing & at_end_of_complete_input)
    def _(event: Any) -> None:
        event.current_buffer.validate_and_handle()

    @kb.add("enter", filter=editing & ~at_end_of_complete_input)
    def _(event: Any) -> None:
        buf = event.current_buffer
        buf.insert_text("\n" + " " * indentation(buf.document.text_before_cursor))

    @kb.add("escape", "enter")
    def _(event: Any) -> None:
        buf = event.current_buffer
        buf.insert_text("\n" + " " * indentation(buf.document.text_before_cursor))

    @kb.add("enter", filter=completion_is_selected & ~is_searching)
    def _(event: Any) -> None:
        event.current_buffer.complete_state = None

    def take_found_entry(event: Any) -> Any:
        """End a history search (Ctrl-R) with the entry found in the input, the cursor
        at its end (where the search left it, Enter would split the entry)."""
        accept_search()
        buf = event.app.current_buffer
        buf.cursor_position = len(buf.text)
        return buf

    @kb.add("enter", filter=is_searching)
    def _(event: Any) -> None:
        buf = take_found_entry(event)
        if at_end_of_complete_input():
            buf.validate_and_handle()

    # Eager, as prompt_toolkit's own: Esc is also the first key of Alt-Enter.
    @kb.add("escape", filter=is_searching, eager=True)
    def _(event: Any) -> None:
        take_found_entry(event)

    return kb


def make_session(repl: Repl, history: History | None = None, **options: Any
                 ) -> PromptSession:
    """The prompt_toolkit session of the REPL (``options``: ``input``, ``output``)."""
    def continuation(width: int, line_number: int, wrap_count: int) -> str:
        return "." * (width - 1) + " "

    def toolbar() -> Any:
        from prompt_toolkit.application import get_app

        text = get_app().current_buffer.document.text_before_cursor
        try:
            sig = signature(repl, text)
        except Exception:  # a toolbar must never break the prompt
            sig = ""
        if sig:
            return [("class:bottom-toolbar.signature", " " + sig)]
        return " Enter runs · Alt-Enter new line · Tab completes · ,help · Ctrl-D quits"

    return PromptSession(
        lexer=PygmentsLexer(FlowmetalLexer),
        multiline=True,
        completer=FlowmetalCompleter(repl),
        complete_while_typing=False,
        auto_suggest=AutoSuggestFromHistory(),
        history=history if history is not None else history_file(),
        key_bindings=key_bindings(repl),
        input_processors=[HighlightMatchingBracketProcessor(chars="[](){}")],
        prompt_continuation=continuation,
        bottom_toolbar=toolbar,
        style=STYLE,
        include_default_pygments_style=True,
        **options,
    )


@contextmanager
def quiet_terminal() -> Iterator[None]:
    """While inside, a terminal on standard input does not echo what is typed between
    prompts (prompt_toolkit echoes input itself at a prompt).  Otherwise keys typed
    during an evaluation, and the ^C of an interrupt, would be echoed in the middle of
    its output, and again by the next prompt."""
    try:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    except (AttributeError, ValueError, OSError, termios.error):
        saved = None
    if saved is None:
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


GREETING = "Flowmetal REPL: ,help lists the commands, Ctrl-D quits"


def run_interactive(repl: Repl, session: PromptSession | None = None,
                    greet: bool = True) -> int:
    """Read, evaluate and print until Ctrl-D or ``,quit``; the exit status (0).
    ``session`` is the prompt_toolkit session (default: ``make_session(repl)``)."""
    session = session or make_session(repl)
    if greet:
        repl.console.line(GREETING, "note")
    # On a terminal, output from the REPL's worker thread goes above the prompt.
    with patch_stdout(raw=True) if repl.console.color else nullcontext(), \
            quiet_terminal():
        while not repl.done:
            try:
                text = session.prompt(repl.prompt())
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            repl.submit(text)
    return 0
