"""Stored analyses: a program kept as its node tree runs, in a fresh process and without
the analyzer, exactly as the analyzed program does; so does a continuation made against
the original; the standard library is such programs, rebuilt by hash from its records;
and a record this machine cannot run says what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cbor2
import pytest

from flowmetal import nodes as N
from flowmetal.analysis import (
    FORMAT,
    CodeUnavailable,
    load_program,
    program_from_record,
    program_record,
)
from flowmetal.codec import (
    BaseMismatch,
    CodecError,
    Image,
    decode_machine,
    decode_value,
    encode_machine,
    encode_value,
    state_base,
)
from flowmetal.interpreter import Base, Session, base, base_for, stdlib_files
from flowmetal.machine import Machine, call_state, error_value
from flowmetal.primitives.effects import TaskId
from flowmetal.printer import to_string
from flowmetal.program import PROGRAMS
from flowmetal.reader import Syntax
from flowmetal.source import read_script
from flowmetal.values import FlowmetalError, Map, Symbol, Vector, kw, sym

from .resume_corpus import CORPUS
from .test_lang import FILES, FUEL, SLICE, Source, prelude

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.fm"))
ARGS = ["alpha", "two words"]
K_OP = kw("op")


# ---------------------------------------------------------------------------------------
# Running a program with its effects answered here (a stand-in for the runtime)


def prepare(session: Session, file: str) -> None:
    """The globals a script is started with."""
    session.globals[sym("*command-line-args*")] = Vector(ARGS)
    session.globals[sym("*file*")] = file


def drive(main: Machine, fuel: int = FUEL) -> tuple[str, str, str]:
    """Run ``main`` and the tasks it spawns, answering their effects at once (sleep
    returns, now is 0.0, random 0); a wait nobody can answer times out.  Returns the
    main machine's status, its value or error as text, and all output in order."""
    out: list[str] = []
    tasks: dict[str, dict] = {}

    def add(m: Machine) -> str:
        tid = f"t{len(tasks)}"
        m.task_id, m.write = tid, out.append
        tasks[tid] = {"m": m, "inbox": []}
        return tid

    add(main)
    while fuel > 0 and main.status in ("running", "waiting"):
        progressed = False
        for t in list(tasks.values()):
            m = t["m"]
            if m.status == "running":
                before = m.reductions
                m.run(min(SLICE, fuel))
                fuel -= max(1, m.reductions - before)
                progressed = True
                for seq in m.consumed:  # what receive took leaves the inbox
                    t["inbox"][seq - 1] = (True, None)
                m.consumed.clear()
            if m.status == "waiting" and answer(m, t, tasks, add):
                progressed = True
        if not progressed and not time_out_one(tasks):
            break
    value = main.val if main.status == "done" else main.error
    return outcome(main.status, value, "".join(out))


def outcome(status: str, value, output: str) -> list:
    """How a run ended: status, the value as text, the output, and the value encoded
    (a set prints in hash order, which differs between processes)."""
    try:
        data = encode_value(value)
    except CodecError:
        data = None
    return [status, to_string(value), output, data]


def same(want: list, have: list) -> bool:
    """Two outcomes agree: status and output, and the value's text or the value."""
    if want[0] != have[0] or want[2] != have[2]:
        return False
    if want[1] == have[1]:
        return True
    return want[3] is not None and have[3] is not None and \
        decode_value(want[3], base().globals) == decode_value(have[3], base().globals)


def answer(m: Machine, t: dict, tasks: dict, add) -> bool:
    req = m.request
    op = req.get(K_OP).name
    if op in ("sleep", "now", "random"):
        m.answer(None if op == "sleep" else 0.0 if op == "now" else 0)
    elif op == "send":
        tasks[req.get(kw("to"))]["inbox"].append((False, req.get(kw("message"))))
        m.answer(None)
    elif op == "spawn":
        child = Machine(dict(m.globals), own=dict(m.own))
        child.node, child.env, child.k, child.val = call_state(req.get(kw("target")),
                                                              tuple(req.get(kw("args"))))
        m.answer(TaskId(add(child)))
    elif op == "join":
        other = tasks[req.get(kw("task"))]["m"]
        if other.status == "done":
            m.answer(other.val)
        elif other.status == "error":
            m.answer_error(error_value("task-failed", "joined task failed", other.error,
                                       Vector()))
        else:
            return False
    elif op == "next-message":
        inbox = t["inbox"]
        seq = next((i + 1 for i in range(req.get(kw("after")), len(inbox))
                    if not inbox[i][0]), None)
        if seq is None:
            return False
        m.answer(Map({kw("seq"): seq, kw("message"): inbox[seq - 1][1],
                      kw("deadline"): req.get(kw("deadline"))}))
    else:
        raise AssertionError(f"unexpected request {to_string(req)}")
    return True


def time_out_one(tasks: dict) -> bool:
    for t in tasks.values():
        m = t["m"]
        if m.status == "waiting":
            op = m.request.get(K_OP).name
            m.answer_error(error_value("timeout", f"{op} timed out", None, Vector()))
            return True
    return False


# ---------------------------------------------------------------------------------------
# The programs: examples, the corpus, and every form the conformance suite runs


def assertion_parts(form: Syntax) -> list[Syntax]:
    """The forms test_lang evaluates for one top-level form."""
    head = form.value[0].value.name if form.kind == "list" and form.value and \
        form.value[0].kind == "atom" and type(form.value[0].value) is Symbol else None
    if head == "pending" and len(form.value) == 3:
        return assertion_parts(form.value[2])
    if head in ("expect", "expect-error", "expect-output"):
        return [f for f in form.value[1:] if f.kind != "atom" or type(f.value) is Symbol]
    return [form]


def lang_sequence(path: Path) -> tuple[list[str], list]:
    """Load and run, in one session, the prelude and each form a conformance file
    evaluates: the programs' hashes and their outcomes."""
    session = Session()
    hashes, outcomes = [], []
    pre = prelude()
    src = Source(path.read_text(encoding="utf-8"), f"tests/lang/{path.name}")
    for source, form in [(pre, f) for f in pre.forms] + \
            [(src, part) for f in src.forms for part in assertion_parts(f)]:
        s = form.span
        padded = "\n" * (s.line - 1) + " " * (s.col - 1) + source.snippet(form)
        try:
            program = session.load(padded, source.file)
        except FlowmetalError:
            continue
        hashes.append(program.hash)
        outcomes.append(run_bounded(session.machine(program)))
    return hashes, outcomes


def run_bounded(m: Machine) -> list:
    fuel = FUEL
    while m.status == "running" and fuel > 0:
        m.run(min(SLICE, fuel))
        fuel -= SLICE
    value = m.val if m.status == "done" else m.error if m.status == "error" else m.request
    return outcome(m.status, value, "".join(m.output))


FRESH = textwrap.dedent("""
    import sys
    import cbor2
    sys.path.insert(0, sys.argv[1])
    from flowmetal import analyzer
    from flowmetal.analysis import load_program
    from flowmetal.codec import decode_machine
    from flowmetal.interpreter import Session, base
    from tests.test_analysis_store import drive, prepare, run_bounded

    job = cbor2.loads(open(sys.argv[2], "rb").read())
    base()
    def no_analysis(*args, **kwargs):
        raise AssertionError("the analyzer ran")
    analyzer.Analyzer.analyze_toplevel = no_analysis
    analyzer.Analyzer.analyze = no_analysis
    get = job["records"].get
    results = []
    for item in job["sequences"]:
        session = Session()
        outcomes = []
        for digest in item:
            program = load_program(digest, get)
            outcomes.append(run_bounded(session.machine(program)))
        results.append(outcomes)
    for digest in job["scripts"]:
        program = load_program(digest, get)
        session = Session()
        prepare(session, program.file)
        results.append(list(drive(session.machine(program))))
    for digest, state in job["states"]:
        load_program(digest, get)
        results.append(list(drive(decode_machine(state, base().globals))))
    sys.stdout.buffer.write(cbor2.dumps(results))
""")


def run_fresh(tmp_path: Path, job: dict, script: str = FRESH, env: dict | None = None) -> list:
    path = tmp_path / "job.cbor"
    path.write_bytes(cbor2.dumps(job))
    out = subprocess.run([sys.executable, "-c", script, str(ROOT), str(path)], cwd=ROOT,
                         capture_output=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr.decode()
    return cbor2.loads(out.stdout)


def records_of(hashes) -> dict:
    return {h: program_record(PROGRAMS[h]) for h in hashes}


def test_every_program_runs_the_same_from_its_record_in_a_fresh_process(tmp_path):
    sequences, expected = [], []
    for path in FILES:
        hashes, outcomes = lang_sequence(path)
        sequences.append(hashes)
        expected.append(outcomes)
    scripts = []
    for path in EXAMPLES:
        session = Session()
        file = f"examples/{path.name}"
        program = session.load(read_script(path), file)
        prepare(session, file)
        scripts.append(program.hash)
        expected.append(list(drive(session.machine(program))))
    # A continuation made against the original, finished against the loaded program:
    # each corpus program cut at several points, each example at its first wait.
    states = []
    for name, source in sorted(CORPUS.items()):
        s = Session()
        program = s.load(source, f"{name}.fm")
        total = Machine(s.globals, program.entry)
        total.run_to_end()
        for cut in (1, total.reductions // 3, total.reductions // 2, total.reductions - 1):
            m = s.machine(program)
            m.run(cut)
            states.append((program.hash, encode_machine(m, base().globals)))
            before = "".join(m.output)
            rest = list(drive(decode_machine(states[-1][1], base().globals)))
            expected.append(rest)
            straight = s.machine(program)
            straight.run_to_end()
            assert before + rest[2] == "".join(straight.output)
    for path in EXAMPLES:
        s = Session()
        file = f"examples/{path.name}"
        program = s.load(read_script(path), file)
        prepare(s, file)
        m = s.machine(program)
        m.run(FUEL)
        if m.status != "waiting":
            continue
        states.append((program.hash, encode_machine(m, base().globals)))
        expected.append(list(drive(decode_machine(states[-1][1], base().globals))))
    assert len(scripts) == len(EXAMPLES) and len(sequences) == len(FILES)
    hashes = {h for seq in sequences for h in seq} | set(scripts) | {h for h, _ in states}
    job = {"records": records_of(hashes), "sequences": sequences, "scripts": scripts,
           "states": states}
    got = run_fresh(tmp_path, job)
    assert len(got) == len(expected)
    for want, have in zip(expected, got, strict=True):
        assert same(want, have), (want[:3], have[:3])


def test_examples_print_what_test_examples_expects():
    from .test_connector_examples import SERVED_EXAMPLES
    from .test_examples import EXPECTED

    for path in EXAMPLES:
        if path.name in ("error.fm", "receive_timeout.fm"):
            continue  # the stand-in runtime words errors and timeouts its own way
        if path.name in SERVED_EXAMPLES:
            continue  # they need servers (test_connector_examples.py runs them)
        s = Session()
        file = f"examples/{path.name}"
        program = program_from_record(program_record(
            s.load(read_script(path), file)))
        prepare(s, file)
        status, _, output, _ = drive(s.machine(program))
        assert (status, output) == ("done", EXPECTED[path.name][2]), path.name


def test_record_is_cbor_and_keeps_derived_attributes():
    s = Session()
    program = s.load("(defn f [a & more] (let [x (inc a)] (+ x (count more))))"
                     "(def g (fn ([] 1) ([a] a)))\n(f 1 2 3)", "derived.fm")
    record = cbor2.loads(cbor2.dumps(program_record(program)))
    assert record["format"] == FORMAT and record["nodes"] == len(program.nodes)
    PROGRAMS.pop(program.hash)
    try:
        loaded = program_from_record(record, program.hash)
    finally:
        PROGRAMS[program.hash] = program
    assert loaded is not program and loaded.hash == program.hash
    for a, b in zip(program.nodes, loaded.nodes, strict=True):
        assert type(a) is type(b) and a.span == b.span and a.proc == b.proc
        assert (a.ev is None) == (b.ev is None) and (a.slow is None) == (b.slow is None)
        for attr in ("single", "extra", "fixed", "direct"):
            if hasattr(a, attr):
                got = getattr(b, attr)
                want = getattr(a, attr)
                if isinstance(want, N.Node):
                    assert got.id == want.id
                else:
                    assert got == want
    assert [n.id for n in loaded.forms] == [n.id for n in program.forms]
    assert loaded.entry.id == program.entry.id
    m = Session().machine(loaded)
    assert m.run_to_end() == "done" and m.val == 4


def test_deep_simple_code_is_cut_into_steps_the_same_way():
    nested = "(+ 1 " * 120 + "0" + ")" * 120
    s = Session()
    program = s.load(f"(defn f [] {nested}) (f)", "deep.fm")
    cut = [n.id for n in program.nodes if n.slow is not None and n.ev is None]
    assert cut  # the analyzer made some simple nodes steps of their own
    record = program_record(program)
    PROGRAMS.pop(program.hash)
    try:
        loaded = program_from_record(record)
    finally:
        PROGRAMS[program.hash] = program
    assert [n.id for n in loaded.nodes if n.slow is not None and n.ev is None] == cut
    m = Session().machine(loaded)
    assert m.run_to_end() == "done" and m.val == 120


def test_a_constant_procedure_from_a_macro_survives():
    source = """
    (defmacro with-helper [x] (list (fn [v] (* v 10)) x))
    (def twice (fn [y] (with-helper (+ y y))))
    [(twice 2) (with-helper 1)]
    """
    s = Session()
    program = s.load(source, "macro_const.fm")
    record = cbor2.loads(cbor2.dumps(program_record(program)))
    PROGRAMS.pop(program.hash)
    try:
        loaded = program_from_record(record)
    finally:
        PROGRAMS[program.hash] = program
    m = Session().machine(loaded)
    assert m.run_to_end() == "done" and to_string(m.val) == "[40 10]"


# ---------------------------------------------------------------------------------------
# What a machine cannot run is named


def fresh_record(source: str = "(defn f [x] (inc x)) (f 41)", file: str = "cu.fm") -> dict:
    s = Session()
    program = s.load(source, file)
    record = cbor2.loads(cbor2.dumps(program_record(program)))
    PROGRAMS.pop(program.hash)
    return record


def test_unknown_format_is_code_unavailable():
    record = fresh_record()
    record["format"] = "flowmetal-analysis/9"
    with pytest.raises(CodeUnavailable, match="flowmetal-analysis/9"):
        program_from_record(record)


def test_source_only_record_is_not_analyzed_again():
    with pytest.raises(CodeUnavailable, match="without its analysis"):
        program_from_record({"v": 1, "file": "old.fm", "source": "1", "base": "", "nodes": 1})


def test_missing_node_class_is_named():
    record = fresh_record()
    record["tree"][0][0] = "Teleport"
    with pytest.raises(CodeUnavailable, match="Teleport"):
        program_from_record(record)


def test_missing_primitive_is_named():
    record = fresh_record("(defn f [x] (+ x 1)) (f 41)", "prim.fm")
    for node in record["tree"]:
        for i, field in enumerate(node[1]):
            if field == ["p", "+"]:
                node[1][i] = ["p", "warp-drive"]
    with pytest.raises(CodeUnavailable, match="warp-drive"):
        program_from_record(record)


def test_changed_field_list_is_named():
    record = fresh_record()
    for node in record["tree"]:
        if node[0] == "App":
            node[1].append(None)
            break
    with pytest.raises(CodeUnavailable, match="App"):
        program_from_record(record)


def test_tampered_record_does_not_match_its_hash():
    record = fresh_record()
    record["source"] += " "
    with pytest.raises(CodeUnavailable, match="hash"):
        program_from_record(record)


def test_load_program_names_a_missing_record():
    with pytest.raises(CodeUnavailable, match="not in the program store"):
        load_program("ab" * 32, {}.get)
    record = fresh_record()
    assert load_program(record["hash"], {record["hash"]: record}.get).hash == record["hash"]


# ---------------------------------------------------------------------------------------
# The standard library by hash


def test_stdlib_hashes_chain_and_records_cover_it():
    b = base()
    records = b.records()
    assert set(records) == {p.hash for p in b.programs} | {b.hash}
    assert records[b.hash]["programs"] == [p.hash for p in b.programs]
    prefix = b.programs[0].base
    for p in b.programs[1:]:
        assert p.base != prefix  # each is analyzed against the ones before it
        prefix = p.base
    s = Session()
    assert s.load("1").base == b.hash


def test_changing_one_stdlib_file_changes_it_and_those_after():
    files = stdlib_files()
    changed = [(n, src + "\n; a comment\n" if n == files[1][0] else src) for n, src in files]
    other = Base(changed)
    mine = base()
    assert other.hash != mine.hash
    assert other.programs[0].hash == mine.programs[0].hash
    assert [a.hash != b.hash for a, b in zip(other.programs[1:], mine.programs[1:])] == \
        [True] * (len(files) - 1)


def test_base_from_records_behaves_as_the_analyzed_one():
    b = base()
    rebuilt = Base.from_records(b.hash, b.records().get)
    assert set(rebuilt.globals) == set(b.globals) and set(rebuilt.macros) == set(b.macros)
    s = Session(rebuilt)
    assert to_string(s.eval_string("(when true (->> (range 5) (map inc) (filter odd?)))")) \
        == "(1 3 5)"


def test_state_names_its_base_and_a_wrong_base_is_refused():
    s = Session()
    m = s.machine(s.load("(defn f [] (sleep 1) (map inc [1 2])) (f)"))
    m.run(1000)
    assert m.status == "waiting"
    data = encode_machine(m, base().globals)
    assert state_base(data) == base().hash
    image = Image(base().globals).encode(m)
    assert state_base(image) == base().hash and decode_machine(image, base().globals)
    files = stdlib_files()
    other = Base([(n, src + "\n;x\n") for n, src in files])
    with pytest.raises(BaseMismatch):
        decode_machine(data, other.globals)
    plain = encode_machine(m, {})
    assert state_base(plain) is None


STALE = textwrap.dedent("""
    import sys
    import cbor2
    sys.path.insert(0, sys.argv[1])
    from flowmetal import interpreter
    job = cbor2.loads(open(sys.argv[2], "rb").read())
    shipped = interpreter.stdlib_files
    # This Flowmetal ships a standard library that differs from the task's.
    interpreter.stdlib_files = lambda: [(n, s + "\\n; changed\\n") for n, s in shipped()]
    from flowmetal.analysis import load_program
    from flowmetal.codec import decode_machine, encode_machine, state_base
    from flowmetal.interpreter import base, base_for
    get = job["records"].get
    digest = state_base(job["state"])
    assert digest != base().hash
    old = base_for(digest, get)
    assert base_for(digest, get) is old and old.hash == digest
    for h in job["programs"]:
        load_program(h, get)
    m = decode_machine(job["state"], old.globals)
    m.answer(None)
    m.run_to_end()
    # and it can be stored again, still naming its own standard library
    assert state_base(encode_machine(m, old.globals)) == digest
    sys.stdout.buffer.write(cbor2.dumps([m.status, repr(m.val), "".join(m.output)]))
""")


def test_a_sleeping_task_resumes_on_its_stdlib_after_the_stdlib_changed(tmp_path):
    s = Session()
    program = s.load('(defn g [x] (str "got " x)) (println (g (do (sleep 600) "hello")))'
                     ' (count (map inc [1 2 3]))', "sleeper.fm")
    m = s.machine(program)
    m.run(10_000)
    assert m.status == "waiting"
    programs: set = set()
    state = encode_machine(m, base().globals, programs)
    records = dict(base().records())
    records[program.hash] = program_record(program)
    assert programs <= set(records)
    job = {"records": records, "state": state, "programs": sorted(programs)}
    status, value, output = run_fresh(tmp_path, job, STALE)
    assert (status, value, output) == ("done", "3", "got hello\n")


def test_base_for_names_what_is_missing():
    with pytest.raises(CodeUnavailable, match="not in the program store"):
        base_for("cd" * 32, {}.get)
    files = stdlib_files()
    other = Base([(n, src + "\n;y\n") for n, src in files])
    records = dict(other.records())
    del records[other.programs[-1].hash]
    from flowmetal import interpreter

    interpreter._BASES.pop(other.hash, None)
    PROGRAMS.pop(other.programs[-1].hash)  # as in a process that never analyzed it
    with pytest.raises(CodeUnavailable, match="not in the program store"):
        base_for(other.hash, records.get)


def test_state_base_reads_only_the_head():
    s = Session()
    m = s.machine(s.load("(do (sleep 1) 5)"))
    m.run(100)
    old = Base([(n, src + "\n;z\n") for n, src in stdlib_files()])
    data = Image(old.globals).encode(m)
    assert state_base(data) == old.hash
    assert state_base(data[:200]) == old.hash  # the records are never read
    with pytest.raises(CodecError):
        state_base(b"not a state")


def test_old_documents_decode_as_today():
    s = Session()
    m = s.machine(s.load("(do (sleep 1) 5)"))
    m.run(100)
    data = encode_machine(m, {})  # no base named
    assert state_base(data) is None
    assert base_for(None, {}.get) is base()
    m2 = decode_machine(data, base().globals)
    m2.answer(None)
    assert m2.run_to_end() == "done" and m2.val == 5


def test_analysis_record_names_required_programs():
    source = "(defmacro k [] (list (fn [] 7))) (def seven (fn [] (k))) (seven)"
    s = Session()
    program = s.load(source, "req.fm")
    record = program_record(program)
    assert program.hash not in record["requires"]
    assert set(record["requires"]) <= set(PROGRAMS)
    assert os.path.basename(record["file"]) == "req.fm"
