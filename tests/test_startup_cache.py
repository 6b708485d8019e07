"""The analysis cache: the standard library (and a started program) loaded from files
named by hash instead of analyzed again, as derived data: deleting it, damaging it or
changing the standard library or the analyzer never changes what a command does.

Each check runs fresh processes with a cache directory of its own (``FLOWMETAL_CACHE``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowmetal import analysis_cache
from flowmetal.codec import encode_value
from flowmetal.interpreter import Base, Session, base, stdlib_files

ROOT = Path(__file__).resolve().parent.parent

# Fails if the standard library is analyzed: what a process that loads it from the cache
# must not do.
NO_ANALYSIS = textwrap.dedent("""
    from flowmetal import interpreter
    def refuse(self, *args, **kwargs):
        raise SystemExit("the analyzer ran")
    interpreter.Base.__init__ = refuse
""")


def python(code: str, cache: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the cache at ``cache``."""
    full = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_NO_CACHE"}
    full.update(FLOWMETAL_CACHE=str(cache), **env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


def flowmetal(cache: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``flowmetal ARGS`` in a fresh process with the cache at ``cache``."""
    code = "import sys; from flowmetal.cli import main; sys.exit(main(sys.argv[1:]))"
    full = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_NO_CACHE"}
    full.update(FLOWMETAL_CACHE=str(cache), **env)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


EVAL = "from flowmetal.interpreter import Session; print(Session().eval_string('{}'))"
EXPR = "(->> (range 10) (map inc) (filter odd?) (reduce +))"


def stdlib_entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("stdlib-*"))


def test_a_second_process_loads_the_standard_library_without_analyzing(tmp_path):
    cache = tmp_path / "cache"
    first = python(EVAL.format(EXPR), cache)
    assert (first.returncode, first.stdout) == (0, "25\n"), first.stderr
    assert len(stdlib_entries(cache)) == 1
    second = python(NO_ANALYSIS + EVAL.format(EXPR), cache)
    assert (second.returncode, second.stdout) == (0, "25\n"), second.stderr
    # and without the cache, the same process analyzes (so the check above can fail)
    off = python(NO_ANALYSIS + EVAL.format(EXPR), cache, FLOWMETAL_NO_CACHE="1")
    assert off.returncode != 0 and "the analyzer ran" in off.stderr


def test_the_cached_standard_library_is_the_analyzed_one(tmp_path):
    cache = tmp_path / "cache"
    assert python("from flowmetal.interpreter import base; base()", cache).returncode == 0
    # Each global encoded by the codec (code by program hash and node id, environments
    # and data in full) and the records, from the cache and from analysis.
    dump = textwrap.dedent("""
        import sys, cbor2
        from flowmetal.codec import encode_value
        from flowmetal.interpreter import base
        b = base()
        out = {"hash": b.hash, "records": b.records(), "macros": sorted(m.name for m in b.macros),
               "globals": {k.name: encode_value(v) for k, v in b.globals.items()}}
        sys.stdout.buffer.write(cbor2.dumps(out))
    """)
    on = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_NO_CACHE"}
    cached = subprocess.run([sys.executable, "-c", NO_ANALYSIS + dump], cwd=ROOT,
                            env=dict(on, FLOWMETAL_CACHE=str(cache)),
                            capture_output=True, timeout=120)
    analyzed = subprocess.run([sys.executable, "-c", dump], cwd=ROOT,
                              env=dict(os.environ, FLOWMETAL_NO_CACHE="1"),
                              capture_output=True, timeout=120)
    assert cached.returncode == 0 and analyzed.returncode == 0, cached.stderr
    assert cached.stdout == analyzed.stdout


def test_commands_do_the_same_with_the_cache_deleted_or_off(tmp_path):
    cache = tmp_path / "cache"
    program = tmp_path / "p.fm"
    program.write_text("(defmacro twice [x] `(do ~x ~x))\n(twice (println :hi))\n"
                       "(println (map inc [1 2 3]))\n(/ 1 0)\n")
    runs = []
    for env in ({}, {}, {"FLOWMETAL_NO_CACHE": "1"}):
        r = flowmetal(cache, "--store", str(tmp_path / "store"), "run", str(program), **env)
        runs.append((r.returncode, r.stdout, r.stderr.replace(str(tmp_path), "T")))
        if not env:
            assert list(cache.glob("program-*"))
    assert runs[0][0] == 1 and ":hi\n:hi\n(2 3 4)\n" == runs[0][1]
    assert runs[0] == runs[1] == runs[2]
    for entry in cache.iterdir():
        entry.unlink()
    r = flowmetal(cache, "--store", str(tmp_path / "store"), "run", str(program))
    assert (r.returncode, r.stdout, r.stderr.replace(str(tmp_path), "T")) == runs[0]


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "empty", "foreign"])
def test_a_damaged_entry_is_ignored_and_rebuilt(tmp_path, damage):
    cache = tmp_path / "cache"
    assert python(EVAL.format(EXPR), cache).returncode == 0
    [entry] = stdlib_entries(cache)
    data = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(data[:len(data) // 2])
    elif damage == "corrupt":
        middle = len(data) // 2
        entry.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    elif damage == "empty":
        entry.write_bytes(b"")
    else:  # another entry's content under this name
        other = analysis_cache.MAGIC + b"0" * 64 + data[len(analysis_cache.MAGIC) + 64:]
        entry.write_bytes(other)
    r = python(EVAL.format(EXPR), cache)
    assert (r.returncode, r.stdout, r.stderr) == (0, "25\n", "")
    assert entry.read_bytes() == data  # rebuilt: the same analysis makes the same entry
    assert python(NO_ANALYSIS + EVAL.format(EXPR), cache).returncode == 0


def test_an_entry_that_builds_what_the_language_lacks_is_refused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    assert python(EVAL.format(EXPR), cache).returncode == 0
    [entry] = stdlib_entries(cache)
    key = entry.name.removeprefix("stdlib-")
    # A well-formed entry (right key and checksum) whose pickle calls os.system.
    evil = (b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    monkeypatch.setenv("FLOWMETAL_CACHE", str(cache))
    assert analysis_cache.write("stdlib", key, evil)
    r = python(EVAL.format(EXPR), cache)
    assert (r.returncode, r.stdout) == (0, "25\n")
    assert not (tmp_path / "pwned").exists()


def test_a_cache_directory_that_cannot_be_written_is_fine(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for cache in (blocker, blocker / "below"):
        r = flowmetal(cache, "-e", "(str (map inc [1 2]))")
        assert (r.returncode, r.stdout, r.stderr) == (0, '"(2 3)"\n', "")
    if os.geteuid() != 0:  # (root writes into a read-only directory anyway)
        readonly = tmp_path / "readonly"
        readonly.mkdir(mode=0o500)
        r = flowmetal(readonly, "-e", "1")
        assert (r.returncode, r.stdout) == (0, "1\n")


def test_old_entries_go_a_tenth_of_what_is_kept_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWMETAL_CACHE", str(tmp_path))
    monkeypatch.setitem(analysis_cache.KEEP, "program", 20)
    monkeypatch.setitem(analysis_cache._PRUNE_EVERY, "program", 2)
    monkeypatch.setattr(analysis_cache, "_written", {})
    counts = []
    for i in range(40):
        assert analysis_cache.write("program", f"{i:064x}", b"payload")
        os.utime(tmp_path / f"program-{i:064x}", (i, i))  # written in this order
        counts.append(len(list(tmp_path.glob("program-*"))))
    assert max(counts) <= 20 + 2
    kept = sorted(p.name for p in tmp_path.glob("program-*"))
    assert kept[-1] == f"program-{39:064x}" and f"program-{10:064x}" not in kept


def test_nothing_is_kept_when_the_cache_is_off(tmp_path):
    cache = tmp_path / "cache"
    r = flowmetal(cache, "-e", "1", FLOWMETAL_NO_CACHE="1")
    assert (r.returncode, r.stdout) == (0, "1\n")
    assert not cache.exists()


def test_a_changed_standard_library_file_never_uses_the_old_entry(tmp_path):
    cache = tmp_path / "cache"
    assert python(EVAL.format(EXPR), cache).returncode == 0
    changed = textwrap.dedent("""
        from flowmetal import interpreter
        shipped = interpreter.stdlib_files
        interpreter.stdlib_files = lambda: [
            (n, s + ("\\n(defn %added [] :new)\\n" if n == "seq.fm" else ""))
            for n, s in shipped()]
        from flowmetal.interpreter import Session
        print(Session().eval_string("(%added)"))
    """)
    r = python(changed, cache)
    assert (r.returncode, r.stdout) == (0, ":new\n"), r.stderr
    assert len(stdlib_entries(cache)) == 2
    # and the shipped one is still the one a plain process loads, from its own entry
    r = python(NO_ANALYSIS + EVAL.format("(resolve '%added)"), cache)
    assert r.returncode != 0 or r.stdout != ":new\n"
    r = python(NO_ANALYSIS + EVAL.format(EXPR), cache)
    assert (r.returncode, r.stdout) == (0, "25\n"), r.stderr


def test_keys_cover_the_standard_library_and_the_language_code(tmp_path, monkeypatch):
    files = stdlib_files()
    key = analysis_cache.stdlib_key(files)
    for i, (name, source) in enumerate(files):
        edited = list(files)
        edited[i] = (name, source + " ")
        assert analysis_cache.stdlib_key(edited) != key
    # The language's code: a copy of its modules, one of them edited.
    dirs = []
    for folder in analysis_cache._CODE_DIRS:
        copy = tmp_path / folder.name
        copy.mkdir()
        for path in folder.glob("*.py"):
            (copy / path.name).write_bytes(path.read_bytes())
        dirs.append(copy)
    monkeypatch.setattr(analysis_cache, "_CODE_DIRS", tuple(dirs))
    analysis_cache.code_digest.cache_clear()
    try:
        same = analysis_cache.stdlib_key(files)
        analyzer = dirs[0] / "analyzer.py"
        analyzer.write_text(analyzer.read_text() + "\n# changed\n")
        analysis_cache.code_digest.cache_clear()
        assert analysis_cache.stdlib_key(files) != same
    finally:
        analysis_cache.code_digest.cache_clear()
    assert same == key


def test_every_module_the_language_imports_is_in_the_code_digest():
    code = ("import sys, flowmetal.interpreter; print('\\n'.join(m.__file__ for n, m in "
            "sys.modules.items() if n.startswith('flowmetal') and m.__file__))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    hashed = {str(p.resolve()) for d in analysis_cache._CODE_DIRS for p in d.glob("*.py")}
    missing = {f for f in r.stdout.split() if str(Path(f).resolve()) not in hashed}
    assert r.returncode == 0 and not missing


def test_a_base_made_from_its_image_runs_as_the_analyzed_one():
    b = base()
    files = stdlib_files()
    other = Base(files)  # analyzed again, in this process
    assert other.hash == b.hash
    assert {k: encode_value(v) for k, v in other.globals.items()} == \
        {k: encode_value(v) for k, v in b.globals.items()}
    s = Session(b)
    assert s.eval_string("(count (filter even? (range 100)))") == 50


# How a process's standard library nodes are linked: per node, its class, the callables
# the machine attached and what linking derived (the fast paths' stubs installed too).
LINKING = textwrap.dedent("""
    import sys, cbor2
    from flowmetal import nodes as N
    from flowmetal.analysis import link_all
    from flowmetal.interpreter import base
    def linking(node):
        return [type(node).__name__, [getattr(node, a) is not None for a in
                ("ev", "exec", "resume", "slow")], getattr(node, "direct", None),
                getattr(node, "extra", None), getattr(node, "fixed", None),
                type(node) is N.Clause and node.enter is not None,
                getattr(getattr(node, "single", None), "id", None)]
    b = base()
    lazy = [p.file for p in b.programs if p.lazy is not None]
    for p in b.programs:
        link_all(p)
    out = {"lazy": lazy, "nodes": {p.file: [linking(n) for n in p.nodes] for p in b.programs}}
    sys.stdout.buffer.write(cbor2.dumps(out))
""")


def test_standard_library_code_is_linked_when_it_first_runs_as_analysis_links_it(tmp_path):
    cache = tmp_path / "cache"
    assert python("from flowmetal.interpreter import base; base()", cache).returncode == 0
    on = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_NO_CACHE"}
    cached = subprocess.run([sys.executable, "-c", NO_ANALYSIS + LINKING], cwd=ROOT,
                            env=dict(on, FLOWMETAL_CACHE=str(cache)),
                            capture_output=True, timeout=120)
    analyzed = subprocess.run([sys.executable, "-c", LINKING], cwd=ROOT,
                              env=dict(os.environ, FLOWMETAL_NO_CACHE="1"),
                              capture_output=True, timeout=120)
    assert cached.returncode == 0 and analyzed.returncode == 0, cached.stderr
    import cbor2

    cached_out, analyzed_out = cbor2.loads(cached.stdout), cbor2.loads(analyzed.stdout)
    assert cached_out["lazy"] and not analyzed_out["lazy"]
    assert cached_out["nodes"] == analyzed_out["nodes"]


LAZY_RUN = textwrap.dedent("""
    import sys
    from flowmetal.interpreter import Session, base
    b = base()
    batches = sum(len(p.batches) for p in b.programs)
    def unlinked():
        return sum(p.lazy.left for p in b.programs if p.lazy is not None)
    assert unlinked() == batches, (unlinked(), batches)
    s = Session()
    print(s.eval_string("(->> (range 10) (map inc) (filter odd?) (reduce +))"))
    assert 0 < unlinked() < batches  # what ran is linked, the rest is not
""")

# A machine stopped by fuel inside standard library procedures (encoded), and the
# reductions a run takes: in a process that has run nothing of the standard library.
STOPPING = "(reduce + (map (fn [x] (* x x)) (filter odd? (range 50))))"
STOPPED = textwrap.dedent(f"""
    SOURCE = {STOPPING!r}
    import sys
    from flowmetal.codec import encode_machine
    from flowmetal.interpreter import Session, base
    s = Session()
    m = s.machine(s.load(SOURCE))
    m.run(300)
    assert m.status == "running"
    sys.stdout.buffer.write(encode_machine(m, base().globals))
""")
RESUMED = textwrap.dedent(f"""
    SOURCE = {STOPPING!r}
    import sys
    from flowmetal.codec import decode_machine
    from flowmetal.interpreter import Session, base
    from flowmetal.values import sym
    Session().load(SOURCE)  # (the program; the standard library's code stays unlinked)
    m = decode_machine(sys.stdin.buffer.read(), base().globals)
    m.run_to_end()
    s = Session()
    # (second is first called by the compiled f, not by the machine)
    n = s.machine(s.load("(defn f [n acc] (if (= n 0) acc (f (- n 1) (+ acc (if (< n 200) "
                         "(second [0 n]) 0)))))  (f 300 0)"))
    n.run_to_end()
    compiled = [callable(cl.compiled) and cl.body.exec is not None  # (compiled once linked)
                for cl in base().globals[sym("second")].code.clauses]
    print(m.status, m.val, n.val, n.reductions)
    print(compiled, file=sys.stderr)
""")


def test_code_the_cache_loaded_unlinked_runs_from_calls_states_and_compiled_code(tmp_path):
    cache = tmp_path / "cache"
    assert python("from flowmetal.interpreter import base; base()", cache).returncode == 0
    r = python(NO_ANALYSIS + LAZY_RUN, cache)
    assert (r.returncode, r.stdout) == (0, "25\n"), r.stderr
    # A state with frames in the standard library, resumed where none of it is linked;
    # compiled code calling a standard library procedure first (compiling it links it).
    # (the switches are the test's to set, whatever the environment running the suite says)
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWMETAL_NO_CACHE", "FLOWMETAL_COMPILE", "FLOWMETAL_FASTPATH")}
    stopped = subprocess.run([sys.executable, "-c", STOPPED], cwd=ROOT, capture_output=True,
                             env=dict(env, FLOWMETAL_CACHE=str(cache)), timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    outputs, compiled = set(), []
    for extra in ({}, {"FLOWMETAL_NO_CACHE": "1"}, {"FLOWMETAL_COMPILE": "0"}):
        resumed = subprocess.run([sys.executable, "-c", RESUMED], cwd=ROOT, timeout=120,
                                 input=stopped.stdout, capture_output=True,
                                 env=dict(env, FLOWMETAL_CACHE=str(cache), **extra))
        assert resumed.returncode == 0, resumed.stderr
        outputs.add(resumed.stdout)
        compiled.append(resumed.stderr.strip())
    assert len(outputs) == 1 and outputs.pop().startswith(b"done 20825 19900 ")
    assert compiled == [b"[True]", b"[True]", b"[False]"]


# The modules of ``NAMES`` a command imported, printed by the process at its end.
IMPORTS = ("import sys, atexit; atexit.register(lambda: print(sorted(m for m in {} if m in "
           "sys.modules), file=sys.stderr)); from flowmetal.cli import main; "
           "sys.exit(main(sys.argv[1:]))")
NAMES = ("dataclasses", "inspect", "hashlib", "secrets", "socket", "asyncio", "json",
         "argparse", "signal", "flowmetal.connectors.http", "flowmetal.codec",
         "flowmetal.interpreter", "flowmetal.analyzer", "flowmetal.reader")


def imported(cache: Path, store: Path, *args: str) -> list[str]:
    full = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_NO_CACHE"}
    full.update(FLOWMETAL_CACHE=str(cache), FLOWMETAL_HOME=str(store))
    r = subprocess.run([sys.executable, "-c", IMPORTS.format(NAMES), *args], cwd=ROOT,
                       env=full, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return eval(r.stderr.strip().splitlines()[-1])  # noqa: S307 (a list of names it printed)


def test_commands_import_only_what_they_use(tmp_path):
    cache, store = tmp_path / "cache", tmp_path / "store"
    hello = str(ROOT / "examples" / "hello.fm")
    assert "flowmetal.analyzer" in imported(cache, store, "start", hello)  # (analyzes)
    # The analysis from the cache: no analyzer, no reader.
    assert imported(cache, store, "start", hello) == ["flowmetal.codec",
                                                       "flowmetal.interpreter"]
    assert imported(cache, store, "tasks") == ["argparse"]
    assert imported(cache, store, "-e", "1") == ["flowmetal.analyzer", "flowmetal.codec",
                                                 "flowmetal.interpreter",
                                                 "flowmetal.reader", "signal"]
    assert imported(cache, store, "-e", "1") == ["flowmetal.codec", "flowmetal.interpreter",
                                                 "signal"]


def test_a_request_made_by_flowmetal_e_or_run_is_made(tmp_path, service):
    cache, store = tmp_path / "cache", tmp_path / "store"
    request = f'(:status (http {{:url "{service.url("/ok")}"}} :timeout 10))'
    r = flowmetal(cache, "-e", request)
    assert (r.returncode, r.stdout) == (0, "200\n"), r.stderr
    script = tmp_path / "get.fm"
    script.write_text(f"(println {request})\n")
    r = flowmetal(cache, "--store", str(store), "run", str(script))
    assert (r.returncode, r.stdout) == (0, "200\n"), r.stderr


@pytest.mark.slow
def test_the_startup_benchmark_prints_every_figure(tmp_path):
    r = subprocess.run([sys.executable, "-m", "benchmarks.startup", "--quick", "--dir",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"python -c 1\s+[\d.]+ ms", r.stdout), r.stdout
    for name in ("flowmetal -e 1", "flowmetal tasks", "flowmetal start hello.fm"):
        assert re.search(re.escape(name) + r"\s+[\d.]+ ms\s+[\d.]+x\s+first run, cold cache:"
                         r"\s+[\d.]+ ms\s+[\d.]+x", r.stdout), r.stdout
    assert re.search(r"10 x flowmetal start\s+[\d.]+ s\s+[\d.]+x", r.stdout), r.stdout
    assert not list(tmp_path.iterdir()), "the benchmark's directory was not removed"
