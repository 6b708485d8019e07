"""The codec: values and whole machine states survive encoding, in this process and in
another one, and a task interrupted at any reduction finishes as if uninterrupted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmetal.codec import (
    CodecError,
    Image,
    decode_machine,
    decode_value,
    encode_machine,
    encode_value,
)
from flowmetal.interpreter import Session
from flowmetal.printer import to_string
from flowmetal.regex import compile_regex
from flowmetal.values import TRUE, Atom, Delay, Keyword, Map, Vector

from .resume_corpus import CORPUS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def straight(name: str) -> tuple[str, str, str, int]:
    """Run a corpus program uninterrupted: (status, printed value, output, reductions)."""
    s = Session()
    m = s.machine(s.load(CORPUS[name], f"{name}.fm"))
    m.run_to_end()
    value = m.val if m.status == "done" else m.error
    return m.status, to_string(value), "".join(m.output), m.reductions


STRAIGHT = {name: straight(name) for name in CORPUS}


def test_corpus_programs_succeed():
    for name, (status, value, _, _) in STRAIGHT.items():
        assert status == "done", (name, value)


def test_value_round_trip_keeps_types():
    value = Map({Keyword("a"): Vector([1, 2.5, "s", None, TRUE]), "k": (1, 2)})
    assert decode_value(encode_value(value)) == value


def test_values_without_records_are_encoded_alone_and_read_in_either_form():
    for value in (7, -2**70, 2.5, "s", None, TRUE):
        data = encode_value(value)
        assert len(data) < 16 and decode_value(data) == value
        as_map = cbor2.dumps({"format": "flowmetal-state/2", "records": [],
                              "root": cbor2.loads(data)})
        assert decode_value(as_map) == value
    with pytest.raises(CodecError):
        decode_value(cbor2.dumps([1, 2]))


@given(st.lists(st.integers(), max_size=8))
def test_integers_of_any_size_round_trip(numbers):
    value = Vector(numbers)
    back = decode_value(encode_value(value))
    assert back == value and all(type(x) is int for x in back)
    for n in numbers:
        assert decode_value(encode_value(n)) == n


def _format_1(data: bytes) -> bytes:
    """The same document as format 1 wrote it: integers as tag 39999, and a machine's
    registers as a tuple record at the root."""
    top = cbor2.loads(data)
    if type(top) is not dict:  # a value that needs no records, encoded alone
        top = {"records": [], "root": top}

    def item(x):
        return cbor2.CBORTag(39_999, int.from_bytes(x, "big", signed=True)) \
            if type(x) is bytes else x

    records = [[r[0], *map(item, r[1:])] for r in top["records"]]
    if "machine" in top:
        records.append([12, *map(item, top["machine"])])
        root = len(records) - 1
    else:
        root = item(top["root"])
    return cbor2.dumps({"format": "flowmetal-state/1", "records": records, "root": root})


def test_format_1_documents_are_read():
    value = Map({Keyword("a"): Vector([1, -2**70, 2.5, "s", None, TRUE])})
    assert decode_value(_format_1(encode_value(value))) == value
    assert decode_value(_format_1(encode_value(7))) == 7
    s = Session()
    m = s.machine(s.load(CORPUS["closures_share_env"]))
    m.run(40)
    old = decode_machine(_format_1(encode_machine(m, s.base.globals)), s.base.globals)
    assert old.run_to_end() == "done"
    output = "".join(m.output) + "".join(old.output)
    assert (to_string(old.val), output) == STRAIGHT["closures_share_env"][1:3]


def test_shared_environment_stays_shared():
    s = Session()
    m = s.machine(s.load("(let [n 0] [(fn [] (set! n (inc n)) n) (fn [] n)])"))
    m.run_to_end()
    inc_fn, peek_fn = decode_value(encode_value(m.val))
    assert inc_fn.env is peek_fn.env


PATTERNS = ["a\\d+", "(x)|(?<n>y)", "\\\"q", "[^\\]]*"]


@st.composite
def atom_graphs(draw):
    """A vector of values over some atoms, whose values refer to atoms again (cycles and
    sharing included), regexes and delays among them."""
    n = draw(st.integers(1, 5))
    atoms = [Atom(None) for _ in range(n)]
    leaf = st.one_of(st.integers(), st.text(max_size=5), st.sampled_from(PATTERNS).map(
        lambda p: compile_regex(p)), st.sampled_from(atoms), st.just(None))
    values = st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(Vector),
        st.lists(inner, max_size=3).map(lambda xs: Delay(None, Vector(xs), len(xs) == 1))),
        max_leaves=12)
    for a in atoms:
        a.value = draw(values)
    return Vector(draw(st.lists(values, min_size=1, max_size=4))), atoms


def same_graph(a, b, seen: dict) -> bool:
    """``b`` has ``a``'s shape, with each atom or delay of ``a`` always the same one of
    ``b`` (and never two of ``a`` as one of ``b``)."""
    todo = [(a, b)]
    while todo:
        x, y = todo.pop()
        if type(x) is not type(y):
            return False
        if type(x) in (Atom, Delay):
            if id(x) in seen:
                if seen[id(x)] is not y:
                    return False
                continue
            if any(v is y for v in seen.values()):
                return False
            seen[id(x)] = y
            todo.append((x.value, y.value))
            if type(x) is Delay and (x.failed, x.thunk) != (y.failed, y.thunk):
                return False
        elif type(x) is Vector:
            if len(x) != len(y):
                return False
            todo.extend(zip(x, y))
        elif x != y:
            return False
    return True


@given(atom_graphs())
def test_atoms_keep_their_identity(graph):
    value, atoms = graph
    back = decode_value(encode_value(value))
    assert same_graph(value, back, {})
    assert to_string(back) == to_string(value)


def test_an_atom_changed_between_steps_is_encoded_again():
    s = Session()
    m = s.machine(s.load("(def a (atom 0)) (def b [a a]) (swap! a inc) "
                         "(reset! (first b) [:x a]) b"))
    image = Image(s.base.globals)
    states = []
    while m.status == "running" and len(states) < 10_000:
        m.run(1)
        states.append(image.encode(m))
    assert m.status == "done"
    finals = [decode_machine(data, s.base.globals) for data in states]
    for m2 in finals:
        assert m2.run_to_end() == "done"
        first, second = m2.val
        assert first is second and first.value[1] is first
        assert to_string(m2.val) == "[#<atom [:x #<atom …>]> #<atom …>]"


def test_deep_continuation_encodes_without_recursion():
    s = Session()
    program = s.load("(defn d [n] (if (= n 0) 0 (+ 1 (d (- n 1))))) (d 100000)")
    m = s.machine(program)
    m.run(100_000)
    depth, frame = 0, m.k
    while frame is not None:
        depth, frame = depth + 1, frame[1]
    assert depth > 50_000
    data = encode_machine(m, s.base.globals)
    m2 = decode_machine(data, s.base.globals)
    assert m2.run_to_end() == "done"
    assert m2.val == 100000


@pytest.mark.parametrize("cut", [0, 1, 7, 100])
def test_truncated_state_is_a_codec_error(cut):
    s = Session()
    m = s.machine(s.load(CORPUS["closures_share_env"]))
    m.run(40)
    data = encode_machine(m, s.base.globals)
    with pytest.raises(CodecError):
        decode_machine(data[: len(data) - 1 - cut] if cut else data[:-1], s.base.globals)


@given(st.binary(max_size=200))
def test_random_bytes_are_a_codec_error_or_a_state(data):
    try:
        decode_machine(data, {})
    except CodecError:
        pass


def interrupted(name: str, fuel: int) -> tuple[bytes, str]:
    """Run ``name`` for ``fuel`` reductions; return the encoded state and output so far."""
    s = Session()
    m = s.machine(s.load(CORPUS[name], f"{name}.fm"))
    m.run(fuel)
    return encode_machine(m, s.base.globals), "".join(m.output)


def finish(name: str, data: bytes) -> tuple[str, str, str]:
    s = Session()
    s.load(CORPUS[name], f"{name}.fm")
    m = decode_machine(data, s.base.globals)
    m.run_to_end()
    return m.status, to_string(m.val if m.status == "done" else m.error), "".join(m.output)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(CORPUS)), st.floats(0, 1))
def test_resume_at_any_reduction_gives_the_same_result(name, where):
    status, value, output, total = STRAIGHT[name]
    fuel = int(where * total)
    data, before = interrupted(name, fuel)
    got_status, got_value, after = finish(name, data)
    assert (got_status, got_value, before + after) == (status, value, output)


WORKER = textwrap.dedent("""
    import json, sys
    from flowmetal.codec import decode_machine
    from flowmetal.interpreter import Session
    from flowmetal.printer import to_string
    sys.path.insert(0, sys.argv[1])
    from tests.resume_corpus import CORPUS
    for line in sys.stdin:
        request = json.loads(line)
        s = Session()
        s.load(CORPUS[request["name"]], request["name"] + ".fm")
        m = decode_machine(bytes.fromhex(request["state"]), s.base.globals)
        m.run_to_end()
        value = m.val if m.status == "done" else m.error
        print(json.dumps([m.status, to_string(value), "".join(m.output)]), flush=True)
""")


@pytest.fixture(scope="module")
def other_process():
    proc = subprocess.Popen([sys.executable, "-c", WORKER, ROOT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(CORPUS)), where=st.floats(0, 1))
def test_resume_in_another_process(other_process, name, where):
    status, value, output, total = STRAIGHT[name]
    data, before = interrupted(name, int(where * total))
    other_process.stdin.write(json.dumps({"name": name, "state": data.hex()}) + "\n")
    other_process.stdin.flush()
    got_status, got_value, after = json.loads(other_process.stdout.readline())
    assert (got_status, got_value, before + after) == (status, value, output)


def test_resume_in_a_fresh_interpreter_per_state(tmp_path):
    """One fresh process per state: nothing but the bytes and the source cross over."""
    for name in ("generator_callcc", "dynamic_wind_order"):
        status, value, output, total = STRAIGHT[name]
        data, before = interrupted(name, total // 2)
        state_file = tmp_path / f"{name}.state"
        state_file.write_bytes(data)
        script = WORKER.replace("for line in sys.stdin:", "for line in [sys.argv[2]]:")
        request = json.dumps({"name": name, "state": data.hex()})
        out = subprocess.run([sys.executable, "-c", script, ROOT, request], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=True).stdout
        got_status, got_value, after = json.loads(out)
        assert (got_status, got_value, before + after) == (status, value, output)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(CORPUS)), st.lists(st.integers(1, 30), min_size=1, max_size=400),
       st.integers(0, 10_000))
def test_incremental_image_decodes_at_every_step(name, slices, check_seed):
    """An Image re-encodes only what changed; each of its documents must still decode to a
    machine that finishes as an uninterrupted run does."""
    import random

    status, value, output, _ = STRAIGHT[name]
    s = Session()
    m = s.machine(s.load(CORPUS[name], f"{name}.fm"))
    image = Image(s.base.globals)
    printed = ""
    rng = random.Random(check_seed)
    for fuel in slices:
        if m.status != "running":
            break
        m.output = []
        m.write = m.output.append
        m.run(fuel)
        printed += "".join(m.output)
        data = image.encode(m)
        if rng.random() < 0.25 or m.status != "running":
            resumed = decode_machine(data, s.base.globals)
            resumed.run_to_end()
            got = to_string(resumed.val if resumed.status == "done" else resumed.error)
            assert (resumed.status, got, printed + "".join(resumed.output)) == \
                (status, value, output)
