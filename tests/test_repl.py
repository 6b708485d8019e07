"""The REPL: its key handling driven through prompt_toolkit's pipe input, the plain line
REPL through a subprocess, and one session in a pseudo-terminal, read off the screen."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from flowmetal.repl.console import Console
from flowmetal.repl.interactive import indentation, make_session, run_interactive, signature
from flowmetal.repl.repl import Repl

from .cli_helpers import readable

WAIT = 15  # seconds any one wait may take before the test fails


def eventually(check: Callable[[], bool], what: str | Callable[[], str],
               seconds: float = WAIT) -> None:
    """Wait until ``check()`` is true, failing with ``what`` (or what it returns) after
    ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            text = what if isinstance(what, str) else what()
            raise AssertionError(f"timed out waiting for {text}")
        time.sleep(0.01)


class Driver:
    """Runs the interactive REPL in this thread on a pipe input, while a script types
    into it from another thread."""

    def __init__(self, tmp_path: Path):
        self.out = io.StringIO()
        self.repl = Repl(Console(self.out), str(tmp_path / "store"))
        self.history = InMemoryHistory()

    def output(self) -> str:
        return self.out.getvalue()

    def type(self, text: str) -> None:
        self.input.send_text(text)

    def wait_buffer(self, text: str) -> None:
        eventually(lambda: self.session.default_buffer.text == text,
                   f"the input line to read {text!r} "
                   f"(it reads {self.session.default_buffer.text!r})")

    def wait_output(self, text: str, count: int = 1) -> None:
        eventually(lambda: self.output().count(text) >= count,
                   lambda: f"{text!r} in the output:\n{self.output()}")

    def interrupt_when_running(self, reductions: int = 20_000) -> None:
        """Ctrl-C (SIGINT to this process) once an evaluation has run a while."""
        def busy() -> bool:
            m = self.repl.evaluator.running
            return m is not None and m.reductions >= reductions
        eventually(busy, "an evaluation to be running")
        os.kill(os.getpid(), signal.SIGINT)

    def run(self, script: Callable[[Driver], None]) -> str:
        failures: list[BaseException] = []
        with create_pipe_input() as pipe:
            self.input = pipe
            self.session = make_session(self.repl, self.history, input=pipe,
                                        output=DummyOutput())

            def feed() -> None:
                try:
                    script(self)
                except BaseException as exc:
                    failures.append(exc)
                finally:
                    pipe.send_text("\x03\x04")  # clear the line, then end the REPL

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            assert run_interactive(self.repl, self.session) == 0
            feeder.join(WAIT)
        if failures:
            raise failures[0]
        return self.output()


def test_enter_on_an_incomplete_form_opens_an_indented_line(tmp_path):
    def script(d: Driver) -> None:
        d.type("(defn frobnicate [x]\r")
        d.wait_buffer("(defn frobnicate [x]\n  ")
        d.type("(* x 2))\r")
        d.wait_output("frobnicate\n")
        # A bracket in a string or a comment does not count: the reader decides.
        d.type('(str "a (" ; a comment )\r')
        d.wait_buffer('(str "a (" ; a comment )\n     ')
        d.type('"b")\r')
        d.wait_output('"a (b"\n')
        # Alt-Enter opens a line even in a complete form.
        d.type("(frobnicate 4)\x1b\r")
        d.wait_buffer("(frobnicate 4)\n")
        d.type("\r")
        d.wait_output("8\n")

    out = Driver(tmp_path).run(script)
    assert out.endswith('frobnicate\n"a (b"\n8\n')


def test_history_keeps_multi_line_inputs_whole(tmp_path):
    d = Driver(tmp_path)

    def script(d: Driver) -> None:
        d.type("(+ 1\r2)\r")
        d.wait_output("3\n")
        d.type("\x1b[A")  # Up: the previous input, both lines
        d.wait_buffer("(+ 1\n   2)")

    d.run(script)
    assert d.history.get_strings() == ["(+ 1\n   2)"]


def searching(d: Driver) -> bool:
    return d.session.app.layout.search_target_buffer_control is not None


def test_ctrl_r_then_enter_runs_the_entry_found(tmp_path):
    def script(d: Driver) -> None:
        d.type("(+ 40 2)\r")
        d.wait_output("42\n")
        d.type("(- 40 2)\r")
        d.wait_output("38\n")
        d.type("\x12")  # Ctrl-R
        eventually(lambda: searching(d), "the history search to start")
        d.type("+ 4")
        eventually(lambda: d.session.search_buffer.text == "+ 4", "the search text")
        d.type("\r")
        d.wait_output("42\n", count=2)
        d.type("(* 2 3)\r")
        d.wait_output("6\n")

    d = Driver(tmp_path)
    out = d.run(script)
    assert out.endswith("42\n38\n42\n6\n")
    assert d.history.get_strings() == ["(+ 40 2)", "(- 40 2)", "(+ 40 2)", "(* 2 3)"]


def test_ctrl_r_then_esc_puts_the_entry_in_the_input_whole(tmp_path):
    def script(d: Driver) -> None:
        d.type("(+ 40 2)\r")
        d.wait_output("42\n")
        d.type("(- 40 2)\r")
        d.wait_output("38\n")
        d.type("\x12")
        eventually(lambda: searching(d), "the history search to start")
        d.type("+ 4")
        eventually(lambda: d.session.search_buffer.text == "+ 4", "the search text")
        d.type("\x1b")  # Esc: the entry to edit, the cursor at its end
        eventually(lambda: not searching(d), "the search to end")
        d.wait_buffer("(+ 40 2)")
        assert d.session.default_buffer.cursor_position == len("(+ 40 2)")
        d.type("\r")
        d.wait_output("42\n", count=2)

    out = Driver(tmp_path).run(script)
    assert out.endswith("42\n38\n42\n")


def test_tab_completes_names_keywords_and_meta_commands(tmp_path):
    def script(d: Driver) -> None:
        d.type("(defn frobnicate [x] (* x 2))\r")
        d.wait_output("frobnicate\n")
        d.type("(frob")
        d.wait_buffer("(frob")
        d.type("\t")
        d.wait_buffer("(frobnicate")
        d.type(" 21)\r")
        d.wait_output("42\n")
        d.type(",apr")
        d.wait_buffer(",apr")
        d.type("\t")
        d.wait_buffer(",apropos")
        d.type(" frob\r")
        d.wait_output("frobnicate  fn")
        d.type("{:zorblax 1}\r")
        d.wait_output("{:zorblax 1}\n")
        d.type("(get *1 :zorb")
        d.wait_buffer("(get *1 :zorb")
        d.type("\t")
        d.wait_buffer("(get *1 :zorblax")
        d.type(")\r")
        d.wait_output("1\n")

    Driver(tmp_path).run(script)


def test_ctrl_c_interrupts_an_infinite_loop_and_keeps_the_definitions(tmp_path):
    def script(d: Driver) -> None:
        d.type("(def counter 41)\r")
        d.wait_output("counter\n")
        d.type("(defn loop-forever [] (loop-forever)) (loop-forever)\r")
        d.interrupt_when_running()
        d.wait_output("interrupted")
        d.type("(inc counter)\r")
        d.wait_output("42\n")
        d.type("(fn? loop-forever)\r")
        d.wait_output("true\n")

    out = Driver(tmp_path).run(script)
    assert "interrupted: back at the prompt, definitions kept" in out


def test_ctrl_c_at_the_prompt_clears_the_input(tmp_path):
    def script(d: Driver) -> None:
        d.type("(+ 1")
        d.wait_buffer("(+ 1")
        d.type("\x03")
        d.wait_buffer("")
        d.type("(+ 2 3)\r")
        d.wait_output("5\n")

    out = Driver(tmp_path).run(script)
    assert "error" not in out


def test_results_errors_and_meta_commands(tmp_path):
    def script(d: Driver) -> None:
        for line, shown in [("1\r", "1\n"), ("2\r", "2\n"), ("3\r", "3\n"),
                            ("[*1 *2 *3]\r", "[3 2 1]\n"),
                            ("(defn half [x] (/ x 0))\r", "half\n"),
                            ("(half 3)\r", "at half (<repl-5>:1:16)"),
                            ("(:type *e)\r", ":arithmetic-error\n"),
                            (",bt\r", "     1 | (defn half [x] (/ x 0))"),
                            (",quit\r", "")]:
            d.type(line)
            d.wait_output(shown)

    out = Driver(tmp_path).run(script)
    # (half 3) is a tail call at the top level: it leaves no frame (proper tail calls).
    assert "half\nerror: division by zero (:arithmetic-error)\n  at half (<repl-5>:1:16)\n" \
           ":arithmetic-error\n" in out
    assert "     1 | (defn half [x] (/ x 0))\n" \
           "                        ^^^^^^^\n" in out


def test_indentation_and_the_argument_list_shown_below():
    assert indentation("(defn f [x]") == 2
    assert indentation("(foo a") == 5
    assert indentation("(foo\n  (bar 1 2") == 7
    assert indentation("[1 2") == 1
    assert indentation("(let [a 1") == 6
    assert indentation("") == 0
    repl = Repl(Console(io.StringIO()))
    assert signature(repl, "(reduce + ") == "(reduce f coll)  (reduce f acc coll)"
    assert signature(repl, "(when (nil? x) (map ") == "(map f coll)  (map f c1 c2 & colls)"
    assert signature(repl, "(+ 1 ") == "Sum of the arguments."
    assert signature(repl, "(no-such-thing ") == ""


# ---------------------------------------------------------------------------------------
# The plain line REPL, through a pipe


def flowmetal(*args: str, stdin: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLOWMETAL_HOME=str(tmp_path / "store"))
    return subprocess.run([sys.executable, "-m", "flowmetal", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env,
                          cwd=tmp_path)


PLAIN_SCRIPT = """\
(defn greet
  "Say hello."
  [name]
  (str "hello, " name))
(greet "ann")
(+ 1 2) (* 2 3)
*1
(str "a (" ; a comment )
     "b")
(/ 1 0)
(:type *e)
(println "out")
,doc greet
,expand (when a b)
(sleep 0.01)
(receive)
,quit
(println "never")
"""


def test_the_plain_repl_runs_piped_input_with_the_same_semantics(tmp_path):
    r = flowmetal(stdin=PLAIN_SCRIPT, tmp_path=tmp_path)
    assert r.stdout == (
        'greet\n"hello, ann"\n6\n6\n"a (b"\n:arithmetic-error\nout\nnil\n'
        "greet: procedure\n  (greet name)\n  Say hello.\n  defined at <repl-1>:1:1\n"
        "(if a (do b) nil)\nnil\n")
    assert r.stderr.splitlines()[:2] == ["error: division by zero (:arithmetic-error)",
                                         "  at <toplevel> (<repl-6>:1:1)"]
    assert "error: receive needs a durable task: run the expression as one with ,spawn " \
           "EXPR (:needs-task)" in r.stderr
    assert r.returncode == 1  # an input failed


def test_the_plain_repl_exits_0_when_every_input_succeeds(tmp_path):
    r = flowmetal("repl", stdin="(def x 20)\n(+ x\n   22)\n", tmp_path=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "x\n42\n", "")


def test_a_script_on_standard_input_may_start_with_a_hash_bang_line(tmp_path):
    script = "#!/usr/bin/env flowmetal\n; a script\n(println \"hi\")\n(+ 1 2)\n"
    r = flowmetal(stdin=script, tmp_path=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\nnil\n3\n", "")
    # Only a first line: anywhere else #! is what the reader refuses.
    r = flowmetal(stdin="(+ 1 2)\n#!x\n", tmp_path=tmp_path)
    assert r.returncode == 1 and "unknown dispatch `#!`" in r.stderr


def test_the_plain_repl_reports_input_left_incomplete(tmp_path):
    r = flowmetal(stdin="(+ 1 2)\n(foo [1\n", tmp_path=tmp_path)
    assert r.returncode == 1
    assert r.stdout == "3\n"
    assert r.stderr == ("<repl-2>:1:6: unterminated vector opened at <repl-2>:1:6: "
                        "expected `]` before the end of input\n  (foo [1\n       ^\n")


# ---------------------------------------------------------------------------------------
# One session in a pseudo-terminal


class Screen:
    """Just enough of a VT100 to see what prompt_toolkit draws: printable text, CR, LF,
    BS, cursor movement, erasing; other control sequences are ignored."""

    def __init__(self, rows: int = 24, cols: int = 80):
        self.rows, self.cols = rows, cols
        self.lines = [[" "] * cols for _ in range(rows)]
        self.row = self.col = 0
        self.pending = ""

    def feed(self, data: str) -> None:
        text = self.pending + data
        self.pending = ""
        i = 0
        while i < len(text):
            c = text[i]
            if c == "\x1b":
                m = re.compile(r"\x1b(\[[0-9;?>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)"
                               r"|[()][0-9A-Za-z]|[@-Z\\-_=>78])").match(text, i)
                if m is None:
                    self.pending = text[i:]  # an incomplete sequence: wait for more
                    return
                self._escape(m.group(1))
                i = m.end()
                continue
            if c == "\r":
                self.col = 0
            elif c == "\n":
                self._down()
            elif c == "\b":
                self.col = max(0, self.col - 1)
            elif c >= " ":
                if self.col >= self.cols:
                    self.col = 0
                    self._down()
                self.lines[self.row][self.col] = c
                self.col += 1
            i += 1

    def _down(self) -> None:
        if self.row == self.rows - 1:
            self.lines.pop(0)
            self.lines.append([" "] * self.cols)
        else:
            self.row += 1

    def _escape(self, seq: str) -> None:
        if not seq.startswith("[") or "?" in seq:
            return
        final, params = seq[-1], seq[1:-1]
        numbers = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else []
        n = numbers[0] if numbers and numbers[0] else 1
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + n)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = min(self.cols - 1, n - 1)
        elif final in "Hf":
            row = numbers[0] if numbers and numbers[0] else 1
            col = numbers[1] if len(numbers) > 1 and numbers[1] else 1
            self.row, self.col = min(self.rows, row) - 1, min(self.cols, col) - 1
        elif final == "K":
            mode = numbers[0] if numbers else 0
            line = self.lines[self.row]
            span = {0: range(self.col, self.cols), 1: range(0, self.col + 1),
                    2: range(self.cols)}.get(mode, range(0))
            for j in span:
                line[j] = " "
        elif final == "J":
            mode = numbers[0] if numbers else 0
            if mode == 0:
                self._escape("[K")
                rows = range(self.row + 1, self.rows)
            else:
                rows = range(self.rows)
            for r in rows:
                self.lines[r] = [" "] * self.cols

    def text(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.lines]


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_the_repl_in_a_terminal_shows_what_a_user_sees(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    env = dict(os.environ, FLOWMETAL_HOME=str(tmp_path / "store"), TERM="xterm",
               FLOWMETAL_HISTORY=str(tmp_path / "history"), PROMPT_TOOLKIT_NO_CPR="1")
    env.pop("NO_COLOR", None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the REPL on the terminal
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.execve(sys.executable, [sys.executable, "-m", "flowmetal"], env)
        finally:
            os._exit(127)
    screen = Screen()

    def pump(seconds: float = 0.05) -> None:
        if readable(fd, seconds):
            try:
                screen.feed(os.read(fd, 65536).decode("utf-8", "replace"))
            except OSError:
                pass

    def shows(pattern: str) -> None:
        def found() -> bool:
            pump()
            return any(re.search(pattern, line) for line in screen.text())
        eventually(found, lambda: f"{pattern!r} on the screen:\n" + "\n".join(screen.text()))

    def at_prompt(keys: bytes) -> None:
        """Type once the prompt is drawn (the terminal is then in prompt_toolkit's raw
        mode; typed earlier, Ctrl-D would be the line discipline's end of file)."""
        def ready() -> bool:
            pump()
            lines = [line for line in screen.text() if line]
            return bool(lines) and lines[-1] == "fm>"
        eventually(ready, lambda: "a prompt on the screen:\n" + "\n".join(screen.text()))
        os.write(fd, keys)

    try:
        at_prompt(b"(defn sq [x]\r")
        shows(r"^\.\.\.$")  # the continuation prompt (the screen's lines are stripped)
        os.write(fd, b"(* x x))\r")
        shows(r"^sq$")
        at_prompt(b"(sq 12)\r")
        shows(r"^144$")
        at_prompt(b"(defn spin [] (spin))\r")
        shows(r"^spin$")
        at_prompt(b"(spin)\r")
        shows(r"^fm> \(spin\)$")
        time.sleep(0.3)
        os.write(fd, b"\x03")
        shows(r"^interrupted: back at the prompt, definitions kept$")
        at_prompt(b"(sq 3)\r")
        shows(r"^9$")
        at_prompt(b"\x04")
        eventually(lambda: (pump(), os.waitpid(pid, os.WNOHANG)[0] == pid)[1],
                   "the REPL to exit on Ctrl-D")
        pid = 0
        lines = [line for line in screen.text() if line]
        start = lines.index("fm> (defn sq [x]")
        assert lines[start:start + 11] == [
            "fm> (defn sq [x]",
            "...   (* x x))",
            "sq",
            "fm> (sq 12)",
            "144",
            "fm> (defn spin [] (spin))",
            "spin",
            "fm> (spin)",
            "interrupted: back at the prompt, definitions kept",
            "fm> (sq 3)",
            "9",
        ]
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


# ---------------------------------------------------------------------------------------
# Meta-commands


def test_meta_commands(tmp_path):
    out = io.StringIO()
    repl = Repl(Console(out), str(tmp_path / "store"))
    lib = tmp_path / "lib.fm"
    lib.write_text('(defn twice\n  "Call f twice."\n  [f x]\n  (f (f x)))\n(def limit 3)\n',
                   encoding="utf-8")

    def says(command: str) -> str:
        start = len(out.getvalue())
        repl.submit(command)
        return out.getvalue()[start:]

    assert says(f",load {lib}") == "limit\n"
    assert says("(twice inc limit)") == "5\n"
    assert says(",doc twice") == (f"twice: procedure\n  (twice f x)\n  Call f twice.\n"
                                  f"  defined at {lib}:1:1\n")
    assert says(",doc limit") == "limit: a value of type :int\n  3\n"
    assert says(",doc try").startswith("try: special form\n  (try body... (catch")
    assert says(",doc twise").startswith("nothing is named twise; perhaps twice")
    assert says(",apropos twi") == "twice  fn            Call f twice.\n"
    assert says(",expand (-> x (f 1) g)") == "(g (f x 1))\n"
    assert says(",expand (cond a 1 :else 2)") == "(if a 1 2)\n"
    timed = says(",time (reduce + (range 100))")
    assert re.fullmatch(r"4950\n; \d+\.\d{3} ms, [\d,]+ reductions\n", timed), timed
    assert says(",reset") == "a fresh session: only the standard library is defined\n"
    assert "unbound symbol: twice" in says("(twice inc 1)")
    assert says(",frobnicate") == "unknown command ,frobnicate: ,help lists them\n"
    assert says(",atach x").startswith("unknown command ,atach (did you mean ,attach")
    assert says(",up") == ",up needs a task: ,attach ID first (,tasks lists them)\n"
    assert says(",send") == "usage: ,send ID FORM\n"
    assert says(",tasks").startswith("no store at ")
    help_text = says(",help")
    for name in ("load", "time", "expand", "doc", "apropos", "bt", "reset", "spawn", "tasks",
                 "attach", "log", "send", "quit", "up", "down", "frame", "locals", "inbox",
                 "outbox", "watch", "step", "back", "eval"):
        assert re.search(rf"^  ,{name}\b.*  \S", help_text, re.M), name
    assert says(",(+ 1 2)") == "3\n"  # commas are whitespace: this is code
    repl.submit(",quit")
    assert repl.done


def test_the_readme_repl_walkthrough_is_what_the_repl_prints():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    block = readme.split("```\n$ flowmetal\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()[1:]  # after the greeting
    inputs: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("fm> "):
            inputs.append((line[4:], []))
        elif line.startswith("... ") and not inputs[-1][1]:
            inputs[-1] = (inputs[-1][0] + "\n" + line[4:], [])
        else:
            inputs[-1][1].append(line)
    out = io.StringIO()
    repl = Repl(Console(out))
    checked = 0
    for text, expected in inputs:
        if expected[:1] == ["interrupted: back at the prompt, definitions kept"]:
            continue  # the endless loop stopped by Ctrl-C: see the tests above
        start = len(out.getvalue())
        repl.submit(text)
        assert out.getvalue()[start:].splitlines() == expected, text
        checked += 1
    assert checked >= 8
