"""The upgrade planner looks inside atoms and delays: a closure of a changed function
held in an atom or a delay is refused like one held in a frame, and one of an unchanged
function is moved onto the new code."""

from __future__ import annotations

from flowmetal.upgrade import plan_upgrade

from .test_upgrade_plan import finish, new_program, records, wait

V1 = """
(defn f [] 1)
(defn main []
  (let [a (atom [f])
        d (delay f)]
    (force d)
    (sleep 1)
    [((first @a)) ((force d))]))
(main)
"""


def test_a_closure_of_a_changed_function_in_an_atom_or_delay_is_refused():
    state, _, _ = wait(V1)
    plan = plan_upgrade(state, records().get, new_program(V1.replace("[] 1", "[] 2")))
    assert not plan.ok
    assert [p.proc for p in plan.problems if p.role == "closure"] == ["f"]


def test_an_unchanged_closure_in_an_atom_moves_onto_the_new_code():
    state, _, _ = wait(V1)
    plan = plan_upgrade(state, records().get, new_program(V1 + "\n(defn extra [] 1)\n"))
    assert plan.ok, plan.report()
    assert finish(plan.state)[:2] == ("done", "[1 1]")
