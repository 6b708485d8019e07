"""The upgrade planner: a waiting task moves onto new code when every frame of its
continuation maps onto an unchanged definition, runs the new code from there, and is
refused, with the frames named, when one does not."""

from __future__ import annotations

import textwrap

import pytest

from flowmetal.analysis import program_record
from flowmetal.codec import decode_machine, encode_machine, state_base
from flowmetal.interpreter import Base, Session, base, stdlib_files
from flowmetal.machine import Machine
from flowmetal.printer import to_string
from flowmetal.program import PROGRAMS
from flowmetal.upgrade import plan_upgrade

FILE = "task.fm"


def wait(source: str, on: Base | None = None) -> tuple[bytes, Session, str]:
    """Start ``source`` as a task would and run it to its first wait: (state, session,
    the output so far)."""
    s = Session(on)
    m = s.machine(s.load(textwrap.dedent(source), FILE))
    m.run(1_000_000)
    assert m.status == "waiting", m.error
    return encode_machine(m, s.base.globals), s, "".join(m.output)


def records(*bases: Base) -> dict:
    """A program store holding every program loaded here and the given bases."""
    out = {h: program_record(p) for h, p in PROGRAMS.items()}
    for b in bases:
        out.update(b.records())
    return out


def new_program(source: str, on: Base | None = None):
    return Session(on).load(textwrap.dedent(source), FILE)


def finish(data: bytes, on: Base | None = None) -> tuple[str, str, str]:
    """Answer every wait of the decoded state with nil and run it to its end."""
    m = decode_machine(data, (on or base()).globals)
    while m.status == "waiting":
        m.answer(None)
        m.run_to_end()
    return m.status, repr(m.val), "".join(m.output)


V1 = """
    (defn helper [x] (* x 2))
    (defn main []
      (sleep 1)
      (println "result" (helper 21)))
    (main)
"""


def test_unchanged_program_plans_trivially():
    state, _, _ = wait(V1)
    plan = plan_upgrade(state, records().get, new_program(V1))
    assert plan.ok and plan.state is not None and not plan.notes
    assert finish(plan.state)[2] == "result 42\n"


def test_a_changed_function_not_on_the_stack_takes_effect():
    state, _, _ = wait(V1)
    v2 = V1.replace("(* x 2)", "(* x 3)")
    plan = plan_upgrade(state, records().get, new_program(v2))
    assert plan.ok, plan.report()
    assert any("helper" in n and "new definition" in n for n in plan.notes)
    assert state_base(plan.state) == base().hash
    assert new_program(v2).hash in plan.programs
    assert finish(plan.state)[2] == "result 63\n"


def test_a_moved_definition_is_unchanged():
    state, _, _ = wait(V1)
    moved = """
    ; main moved up, and three lines further down
    (defn main []
      (sleep 1)
      (println "result" (helper 21)))


    (defn helper [x] (* x 5))
    (main)
    """
    plan = plan_upgrade(state, records().get, new_program(moved))
    assert plan.ok, plan.report()
    assert finish(plan.state)[2] == "result 105\n"


def test_a_changed_frame_is_refused_and_named():
    state, _, _ = wait(V1)
    v2 = V1.replace('"result"', '"answer"')
    plan = plan_upgrade(state, records().get, new_program(v2))
    assert not plan.ok and plan.state is None
    frames = [p for p in plan.problems if p.role == "frame"]
    assert frames and all(p.proc == "main" for p in frames)
    assert frames[0].where == f"{FILE}:4:3"  # the form it waits in: (sleep 1)
    assert "definition main changed" in frames[0].reason
    assert "main" in plan.report() and f"{FILE}:4:3" in plan.report()


def test_a_removed_definition_on_the_stack_is_refused():
    state, _, _ = wait(V1)
    plan = plan_upgrade(state, records().get, new_program(
        "(defn helper [x] x) (defn start [] (sleep 1)) (start)"))
    assert not plan.ok
    assert any(p.proc == "main" and "removed" in p.reason for p in plan.problems)


def test_a_closure_of_a_changed_function_held_in_a_frame_is_refused():
    v1 = """
    (defn f [] 1)
    (defn main [] (let [g f] (sleep 1) (g)))
    (main)
    """
    state, _, _ = wait(v1)
    plan = plan_upgrade(state, records().get, new_program(v1.replace("[] 1", "[] 2")))
    assert not plan.ok
    assert [p.proc for p in plan.problems if p.role == "closure"] == ["f"]


def test_a_global_holding_state_of_a_changed_definition_is_refused():
    v1 = """
    (def table (vec (range 3)))
    (defn main [] (sleep 1) (count table))
    (main)
    """
    state, _, _ = wait(v1)
    plan = plan_upgrade(state, records().get, new_program(v1.replace("range 3", "range 4")))
    assert not plan.ok
    assert [(p.role, p.proc) for p in plan.problems] == [("global", "table")]
    # an unchanged one is kept as the task made it
    plan = plan_upgrade(state, records().get, new_program(v1 + "\n(defn extra [] 1)\n"))
    assert plan.ok, plan.report()
    assert finish(plan.state)[1] == "3"


def test_constants_and_new_functions_come_with_the_new_program():
    v1 = """
    (def limit 10)
    (defn main [] (sleep 1) (check 5))
    (defn check [n] (< n limit))
    (main)
    """
    state, _, _ = wait(v1)
    v2 = """
    (def limit 3)
    (def names {:a "x"})
    (defn main [] (sleep 1) (check 5))
    (defn check [n] [(< n limit) (twice n) (:a names)])
    (defn twice [n] (* 2 n))
    (main)
    """
    plan = plan_upgrade(state, records().get, new_program(v2))
    assert plan.ok, plan.report()
    assert any("twice" in n and "added" in n for n in plan.notes)
    assert finish(plan.state)[1] == '[false 10 "x"]'


def test_a_new_definition_that_would_never_run_is_refused():
    state, _, _ = wait(V1)
    v2 = V1.replace("(main)", "(def config (hash-map :a (helper 1)))\n(main)")
    plan = plan_upgrade(state, records().get, new_program(v2))
    assert not plan.ok
    assert [(p.role, p.proc) for p in plan.problems] == [("top level", "config")]


TOP = """
    (defn g [x] (str "got " x))
    (println "waited for" (do (sleep 5) "hello"))
    (println (g "x"))
"""


def test_waiting_in_a_top_level_expression_maps_by_the_expression():
    state, _, _ = wait(TOP)
    v2 = TOP.replace('"got "', '"received "') + '(println "and more")\n'
    plan = plan_upgrade(state, records().get, new_program(v2))
    assert plan.ok, plan.report()
    assert finish(plan.state)[2] == "waited for hello\nreceived x\nand more\n"


def test_a_procedure_already_in_hand_is_old_code():
    # (g ...) evaluates g before its argument: the frame holds the old g.
    v1 = """
    (defn g [x] (str "got " x))
    (println (g (do (sleep 5) "hello")))
    """
    state, _, _ = wait(v1)
    plan = plan_upgrade(state, records().get, new_program(v1.replace("got", "have")))
    assert not plan.ok
    assert [(p.role, p.proc, p.where) for p in plan.problems] == \
        [("closure", "g", f"{FILE}:2:1")]


def test_a_new_form_before_the_waiting_one_is_refused():
    state, _, _ = wait(TOP)
    v2 = TOP.replace('(println "waited', '(println "first")\n(println "waited')
    plan = plan_upgrade(state, records().get, new_program(v2))
    assert not plan.ok
    assert [p.role for p in plan.problems] == ["top level"]
    assert "never run" in plan.problems[0].reason


def test_a_changed_top_level_expression_on_the_stack_is_refused():
    state, _, _ = wait(TOP)
    plan = plan_upgrade(state, records().get, new_program(TOP.replace("(sleep 5)", "(sleep 6)")))
    assert not plan.ok
    assert {p.reason for p in plan.problems if p.role == "frame"} == {
        "top-level expression changed (or was removed)",
        "the top-level form the task is in: top-level expression changed (or was removed)"}


# ---------------------------------------------------------------------------------------
# The standard library


def stdlib_with(old: str, new: str) -> Base:
    files = stdlib_files()
    changed = [(n, src.replace(old, new)) for n, src in files]
    assert changed != files
    return Base(changed)


STD = """
    (defn main [] (mapv (fn [x] (sleep x) (* x 10)) [1 2]))
    (main)
"""


def test_a_stdlib_change_off_the_stack_is_ok():
    old = stdlib_with("(defn identity [x] x)", "(defn identity [x] (do x))")
    state, _, _ = wait(STD, old)
    assert state_base(state) == old.hash  # the task waits inside the standard library's map
    plan = plan_upgrade(state, records(old, base()).get, base=base())
    assert plan.ok, plan.report()
    assert plan.base == base().hash and state_base(plan.state) == base().hash
    assert not {p.hash for p in old.programs[1:]} & plan.programs
    assert finish(plan.state) == ("done", "[10 20]", "")


def test_a_stdlib_change_on_the_stack_is_refused():
    old = stdlib_with("(step (cons (f (first s)) acc) (next s))",
                      "(step (cons (f (first s)) acc) (next (seq s)))")
    state, _, _ = wait(STD, old)
    plan = plan_upgrade(state, records(old, base()).get, base=base())
    assert not plan.ok
    procs = {p.proc for p in plan.problems}
    assert "step" in procs or "map" in procs
    assert all(p.where.startswith("stdlib/seq.fm:") for p in plan.problems)


def test_a_stdlib_value_by_name_must_be_unchanged():
    v1 = """
    (def my-map mapv)
    (defn main [] (sleep 1) (my-map inc [1 2]))
    (main)
    """
    same = stdlib_with("(defn identity [x] x)", "(defn identity [x] (do x))")
    state, _, _ = wait(v1, same)
    plan = plan_upgrade(state, records(same, base()).get, base=base())
    assert plan.ok, plan.report()
    assert finish(plan.state)[1] == "[2 3]"
    changed = stdlib_with("(defn mapv [f & colls] (vec (apply map f colls)))",
                          "(defn mapv [f & colls] (into [] (apply map f colls)))")
    state, _, _ = wait(v1, changed)
    plan = plan_upgrade(state, records(changed, base()).get, base=base())
    assert not plan.ok
    assert [(p.role, p.proc) for p in plan.problems] == [("stdlib value", "mapv")]


def test_program_and_stdlib_together():
    old = stdlib_with("(defn identity [x] x)", "(defn identity [x] (do x))")
    state, _, _ = wait(V1, old)
    v2 = new_program(V1.replace("(* x 2)", "(* x 4)"))
    assert v2.base == base().hash
    plan = plan_upgrade(state, records(old, base()).get, v2)
    assert plan.ok, plan.report()
    assert finish(plan.state)[2] == "result 84\n"


def test_missing_code_is_a_refusal_naming_it():
    stale = stdlib_with("(defn identity [x] x)", "(defn identity [x] (do (do x)))")
    state, _, _ = wait(V1, stale)
    for p in stale.programs:
        PROGRAMS.pop(p.hash, None)
    from flowmetal import interpreter

    interpreter._BASES.pop(stale.hash, None)
    plan = plan_upgrade(state, {}.get, base=base())
    assert not plan.ok and plan.problems[0].role == "code"
    assert "not in the program store" in plan.problems[0].reason


def test_report_as_json():
    state, _, _ = wait(V1)
    plan = plan_upgrade(state, records().get, new_program(V1.replace('"result"', '"r"')))
    data = plan.to_json()
    assert data["ok"] is False and data["problems"][0]["proc"] == "main"


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_a_running_state_mid_definition_maps_too(where):
    v1 = """
    (defn work [n] (if (= n 0) 0 (+ 1 (work (- n 1)))))
    (defn other [] :old)
    (defn main [] [(work 50) (other)])
    (main)
    """
    s = Session()
    program = s.load(textwrap.dedent(v1), FILE)
    whole = s.machine(program)
    whole.run_to_end()
    m = s.machine(program)
    m.run(int(whole.reductions * where))
    assert m.status == "running"
    state = encode_machine(m, base().globals)
    plan = plan_upgrade(state, records().get, new_program(v1.replace(":old", ":new")))
    assert plan.ok, plan.report()
    m2 = decode_machine(plan.state, base().globals)
    assert isinstance(m2, Machine)
    m2.run_to_end()
    assert to_string(m2.val) == "[50 :new]"
