"""The UI's pages as HTML, rendered from the dicts of ``ui/data.py`` (the control
plane's own data).  Every value goes through ``html.esc``; nothing here runs script
inline (the page's behaviour is ``static/ui.js``, allowed by the Content-Security-Policy
as ``'self'``)."""

from __future__ import annotations

import time
from typing import Any

from ..runtime.inspect import state_word, waiting_on
from . import charts
from .html import Html, esc, h, join, url

STATUSES = ("runnable", "waiting", "done", "failed", "cancelled", "moved")
FOLD_CHARS = 120        # a local's value longer than this is folded
SOURCE_LINES_MAX = 5000


def when(t: float | None) -> str:
    """A time in UTC, to the second."""
    if t is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def age(seconds: float) -> str:
    """A duration in its two largest units: 42s, 5m 02s, 3h 20m, 4d 06h."""
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def duration(seconds: float) -> str:
    """A short duration with milliseconds under a minute."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    return age(seconds)


def layout(title: str, body: Html, who: Any = None, nav: str = "") -> Html:
    """A whole page: head, navigation (with sign-out when signed in), ``body``."""
    links = join(h('<a href="{}"{}>{}</a>', href, Html(' class="here"') if nav == key else "",
                   label) for key, href, label in (("tasks", "/", "Tasks"),
                                                    ("sequences", "/sequences", "Sequences")))
    account = Html("")
    if who is not None:
        account = h('<form method="post" action="/signout" class="signout">'
                    '<input type="hidden" name="csrf" value="{}">'
                    '<span class="who">token {} ({})</span> <button>Sign out</button></form>',
                    who.csrf, who.record.id, who.record.scope)
    return h('<!doctype html><html lang="en"><head><meta charset="utf-8">'
             '<meta name="viewport" content="width=device-width, initial-scale=1">'
             '<title>{} · Flowmetal</title><link rel="stylesheet" href="/static/ui.css">'
             '<script src="/static/ui.js" defer></script></head><body>'
             '<header><a class="brand" href="/">Flowmetal</a><nav>{}</nav>{}</header>'
             '{}</body></html>', title, links if who is not None else "", account, body)


def error_page(status: int, text: str, who: Any = None) -> Html:
    """A page that says what went wrong."""
    return layout(f"Error {status}", h('<main><h1>Error {}</h1><p class="error">{}</p>'
                                       '<p><a href="/">Back to the tasks</a></p></main>',
                                       status, text), who)


def signin_page(next_path: str, error: str | None = None) -> Html:
    """The sign-in form: a control-plane token (flowmetal token create)."""
    problem = h('<p class="error" id="signin-error">{}</p>', error) if error else ""
    body = h('<main class="signin"><h1>Sign in</h1>{}'
             '<form method="post" action="/signin">'
             '<input type="hidden" name="next" value="{}">'
             '<label>Control-plane token <input type="password" name="token" '
             'autocomplete="current-password" required autofocus></label>'
             '<button>Sign in</button></form>'
             '<p class="note">Make a token with <code>flowmetal token create</code>, or start '
             'the server with <code>flowmetal serve --open</code> for a one-time sign-in '
             'link.</p></main>', problem, next_path)
    return layout("Sign in", body)


# -- the task list ----------------------------------------------------------------------

def state_badge(summary: dict) -> Html:
    """A task's state as a badge (running, blocked, or its status)."""
    word = state_word(summary)
    return h('<span class="badge s-{}">{}</span>', word, word)


def task_row(summary: dict, now: float) -> Html:
    """One row of the task list."""
    wait = summary["waiting"]
    waits = ""
    until = ""
    if wait is not None:
        waits = wait["op"] + (f" {wait['task']}" if wait["task"] else "")
        until = "forever" if wait["until"] is None else when(wait["until"])
        if wait["default_wait"]:
            until += " (default)"
    return h('<tr data-id="{id}" data-updated="{updated}"><td class="id"><a href="/tasks/{id}">'
             '{id}</a></td><td>{name} <code class="hash">{short}</code></td><td>{badge}</td>'
             '<td class="age" data-created="{created}">{age}</td><td>{waits}</td>'
             '<td>{until}</td><td class="num">{steps}</td></tr>',
             id=summary["id"], updated=summary["updated"], name=summary["name"],
             short=summary["program"][:10], badge=state_badge(summary),
             created=summary["created"], age=age(now - summary["created"]), waits=waits,
             until=until, steps=summary["steps"])


def counts_bar(counts: dict[str, int] | None, params: dict) -> Html:
    """The counts per status, each a link to the list of that status."""
    if counts is None:
        return Html('<p class="counts" id="counts">counting…</p>')
    total = sum(counts.values())
    links = [h('<a href="{}" class="{}">all <b>{}</b></a>', url("/", **{**params, "status": None,
                                                                       "after": None}),
               "" if params.get("status") else "here", total)]
    for status in (*STATUSES, *sorted(set(counts) - set(STATUSES))):
        links.append(h('<a href="{}" class="s-{} {}">{} <b>{}</b></a>',
                       url("/", **{**params, "status": status, "after": None}), status,
                       "here" if params.get("status") == status else "", status,
                       counts.get(status, 0)))
    return h('<p class="counts" id="counts">{}</p>', join(links, " "))


def filter_form(params: dict) -> Html:
    """The list's filters (a GET form: its URL is the list's)."""
    options = join(h('<option value="{}"{}>{}</option>', s,
                     Html(" selected") if params.get("status") == s else "", s or "any")
                   for s in ("", *STATUSES))
    fields = join(h('<label>{} <input name="{}" value="{}" placeholder="{}"></label>',
                    label, name, params.get(name, ""), hint)
                  for label, name, hint in (
                      ("id", "id", "prefix"), ("program", "program", "hash or prefix"),
                      ("parent", "parent", "task id"),
                      ("created since", "since", "YYYY-MM-DDTHH:MM (UTC)"),
                      ("until", "until", "YYYY-MM-DDTHH:MM (UTC)")))
    return h('<form method="get" action="/" class="filters" id="filters">'
             '<label>status <select name="status">{}</select></label>{}'
             '<button>Filter</button> <a href="/">clear</a></form>', options, fields)


def list_page(page: dict, counts: dict[str, int] | None, params: dict, who: Any,
              error: str | None = None, events: str | None = None) -> Html:
    """The task list: counts per status, filters, a page of tasks (newest first) that
    follows changes through ``events`` (an SSE URL), and paging."""
    now = page["now"]
    rows = join(task_row(s, now) for s in page["tasks"])
    empty = Html('<tr class="empty"><td colspan="7">No tasks match.</td></tr>') \
        if not page["tasks"] else ""
    paging = []
    if params.get("after"):
        paging.append(h('<a href="{}">newest</a>', url("/", **{**params, "after": None})))
    if page["next"]:
        paging.append(h('<a href="{}" id="older">older →</a>',
                        url("/", **{**params, "after": page["next"]})))
    problem = h('<p class="error">{}</p>', error) if error else ""
    body = h('<main><h1>Tasks</h1>{}{}{}'
             '<p class="note" id="news" hidden></p>'
             '<table class="tasks" id="tasks" data-now="{}" data-events="{}"><thead><tr>'
             '<th>id</th><th>program</th><th>state</th><th>age</th><th>waits on</th>'
             '<th>until</th><th>steps</th></tr></thead><tbody>{}{}</tbody></table>'
             '<p class="paging">{}</p></main>',
             counts_bar(counts, params), filter_form(params), problem, now, events or "",
             rows, empty, join(paging, " "))
    return layout("Tasks", body, who, "tasks")


# -- one task ---------------------------------------------------------------------------

def linked(text: str, ids: list[str]) -> Html:
    """``text`` escaped, with each of the task ids ``ids`` in it a link to its page."""
    out = str(esc(text))
    for tid in ids:
        safe = str(esc(tid))
        out = out.replace(safe, f'<a href="/tasks/{safe}">{safe}</a>')
    return Html(out)


class Timeline:
    """Rows of a task's timeline from its log entries, in order: remembers when each
    request was made, to give its answer's duration, and counts the recorded steps."""

    def __init__(self, task_id: str, created: float, children: list[str]):
        self.task_id = task_id
        self.created = created
        self.children = children
        self.requests: dict[Any, float] = {}
        self.steps = 0

    def row(self, entry: dict) -> Html:
        """The row of one ``log_entry``."""
        kind, d, at = entry["kind"], entry["details"], entry["at"]
        text: Html | str = self._text(kind, d, at)
        return h('<li class="ev k-{}" data-seq="{}"><span class="at" title="{}">+{}</span>'
                 '<span class="kind">{}</span> <span class="what">{}</span></li>',
                 kind, entry["seq"], when(at), duration(max(0.0, at - self.created)), kind,
                 text)

    def _text(self, kind: str, d: dict, at: float) -> Html | str:
        link = lambda text: linked(str(text), self.children)  # noqa: E731
        if kind == "created":
            return h("program <code>{}</code>", str(d.get("program", ""))[:16])
        if kind == "step":
            self.steps += 1
            return h('recorded step <a href="{}">{}</a>: {} reductions, {} bytes of state',
                     url(f"/tasks/{self.task_id}", step=self.steps) + "#frames", self.steps,
                     d.get("reductions"), d.get("state_bytes"))
        if kind == "request":
            self.requests[d.get("request")] = at
            return h("#{} <b>{}</b> {}", d.get("request"), d.get("op"), d.get("args") or "")
        if kind == "answer":
            started = self.requests.pop(d.get("request"), None)
            took = "" if started is None else f" after {duration(at - started)}"
            word = "answered" if d.get("ok") else "failed"
            return h('#{} {} {}{}: {}', d.get("request"), d.get("op"), word, took,
                     link(d.get("value", "")))
        if kind == "message":
            return h("#{} from {}: {}", d.get("seq"), d.get("sender") or "outside",
                     link(d.get("value", "")))
        if kind == "callback":
            return h("callback {}: {}", d.get("callback"), d.get("value", ""))
        if kind == "retry":
            return h("HTTP request #{}: attempt {} failed ({}); retry in {}",
                     d.get("request"), d.get("attempt"), d.get("problem"),
                     duration(float(d.get("retry_in") or 0)))
        if kind == "attempts":
            return h("HTTP request #{}: settled after {} attempts", d.get("request"),
                     d.get("attempts"))
        if kind == "task-event":
            more = [f"{k} {d[k]}" for k in ("worker", "result", "status", "attempt")
                    if d.get(k) is not None]
            return h("#{} <b>{}</b> {}{}", d.get("request"), d.get("task"), d.get("phase"),
                     f" ({', '.join(more)})" if more else "")
        if kind == "done":
            return h("value {}", link(d.get("value", "")))
        if kind in ("failed", "cancelled"):
            return h("{}", d.get("text") or d.get("error") or "")
        if kind == "cancel":
            return h("cancel requested{}", f" by {d['by']}" if d.get("by") else "")
        return join(f"{k}={v}" for k, v in d.items()) if d else ""


def highlighted(frame: dict) -> Html:
    """The frame's source line with its span marked."""
    line = frame.get("source")
    if line is None:
        return Html("")
    col = max(1, frame.get("col") or 1)
    end = frame.get("end_col") if frame.get("end_line") == frame.get("line") else None
    end = len(line) + 1 if end is None else max(col, end)
    return h('<pre class="line"><span class="ln">{}</span>{}<mark>{}</mark>{}</pre>',
             frame.get("line"), line[:col - 1], line[col - 1:end - 1], line[end - 1:])


def folded(text: str) -> Html:
    """A value: as it is when short, folded in a <details> when long."""
    if len(text) <= FOLD_CHARS and "\n" not in text:
        return h("<code>{}</code>", text)
    return h('<details><summary><code>{}…</code> ({} characters)</summary><pre>{}</pre>'
             '</details>', text[:FOLD_CHARS - 20], len(text), text)


def frames_section(frames: list[dict], problem: str | None, file: str | None) -> Html:
    """The continuation's frames, innermost first, each with its procedure, source line
    (span marked) and local variables."""
    if problem:
        return h('<p class="error">The continuation cannot be read: {}</p>', problem)
    if not frames:
        return Html('<p class="note">No frames: the task has ended or not run a step.</p>')
    out = []
    for i, f in enumerate(frames):
        if f["kind"] == "more":
            out.append(h('<li class="note">… {} more frames</li>', f["count"]))
            continue
        where = f"{f['file']}:{f['line']}:{f['col']}" if f.get("file") else "no position"
        place = h('<a href="#L{}">{}</a>', f["line"], where) if f.get("file") == file and \
            f.get("line") else esc(where)
        rows = join(h('<tr><th>{}</th><td>{}</td></tr>', b["name"], folded(b["value"]))
                    for b in f["bindings"])
        locals_ = h('<table class="locals"><tbody>{}</tbody></table>', rows) if rows else \
            Html('<p class="note">no local variables</p>')
        out.append(h('<li class="frame" data-index="{}"><div class="frame-head">'
                     '<span class="n">#{}</span> <b class="proc">{}</b> '
                     '<span class="kind">{}</span> <span class="where">{}</span></div>{}{}</li>',
                     i, i, f.get("proc") or "(top level)", f["kind"], place, highlighted(f),
                     locals_))
    return h('<ol class="frames">{}</ol>', join(out))


def status_section(d: dict) -> Html:
    """The task's state, times, counts and limits."""
    state = state_badge(d)
    wait = waiting_on(d)
    extra = [h(' <span class="note">{}</span>', wait)] if wait else []
    if d.get("cancel") and d["status"] != "cancelled":
        extra.append(Html(' <span class="note">(cancel requested)</span>'))
    if d.get("blocked"):
        extra.append(h(' <span class="error">code: {}</span>', d["blocked"]))
    limits = d.get("limits") or {}
    rows = [("program", h('<code>{}</code> ({})', d["program"], d.get("file") or d["name"])),
            ("created", when(d["created"])), ("updated", when(d["updated"])),
            ("steps", f"{d['steps']} ({d['reductions']} reductions)"),
            ("state", f"{d['state_bytes']} bytes"), ("inbox", f"{d['inbox']} messages")]
    if d.get("parent"):
        rows.append(("parent", h('<a href="/tasks/{}">{}</a>', d["parent"], d["parent"])))
    if d.get("children"):
        rows.append(("children", join((h('<a href="/tasks/{}">{}</a>', c, c)
                                       for c in d["children"]), " ")))
    if d.get("request"):
        rows.append(("waits on", h("<code>{}</code>", d["request"])))
    if d.get("lease"):
        rows.append(("lease", f"{d['lease']['worker']} until {when(d['lease']['until'])}"))
    if d.get("moved_to"):
        rows.append(("moved to", d["moved_to"]))
    rows.append(("limits", ", ".join(f"{k} {'none' if v is None else v}"
                                     for k, v in limits.items())))
    table = join(h("<tr><th>{}</th><td>{}</td></tr>", k, v) for k, v in rows)
    return h('<p class="state">{}{}</p><table class="facts"><tbody>{}</tbody></table>',
             state, join(extra), table)


def result_section(d: dict) -> Html:
    """The task's result, or its error with the Flowmetal backtrace."""
    if d.get("error_text") or d.get("error"):
        return h('<h2>Error</h2><pre class="error-text">{}</pre>',
                 d.get("error_text") or d["error"])
    if d["status"] == "done":
        return h('<h2>Result</h2><pre class="result">{}</pre>', d.get("result"))
    return Html("")


def inbox_section(items: list[dict]) -> Html:
    """The queued messages, oldest first."""
    if not items:
        return Html('<p class="note">The inbox is empty.</p>')
    rows = join(h("<tr><td>#{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", m["seq"],
                  m["sender"] or "outside", when(m["at"]), folded(m["value"])) for m in items)
    return h('<table class="list"><thead><tr><th>seq</th><th>from</th><th>at</th>'
             '<th>message</th></tr></thead><tbody>{}</tbody></table>', rows)


def outbox_section(items: list[dict]) -> Html:
    """The task's outbox entries (requests waiting for a connector or a worker)."""
    if not items:
        return Html('<p class="note">The outbox is empty.</p>')
    rows = join(h("<tr><td>#{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                  "</tr>", e["request"], e["kind"], e["what"], e["attempts"], e["worker"] or "",
                  e["last_error"]) for e in items)
    return h('<table class="list"><thead><tr><th>request</th><th>kind</th><th>what</th>'
             '<th>attempts</th><th>taken by</th><th>last error</th></tr></thead>'
             '<tbody>{}</tbody></table>', rows)


def live_sections(data: dict) -> dict[str, Html]:
    """The parts of a task page that change as the task moves on, by element id."""
    d = data["detail"]
    out = {"live-status": status_section(d), "live-result": result_section(d),
           "live-inbox": inbox_section(data["inbox"]),
           "live-outbox": outbox_section(data["outbox"])}
    if data.get("step") is None:
        out["live-frames"] = frames_section(d["frames"], d["frames_error"], data.get("file"))
    return out


def source_section(source: str | None, frames: list[dict], file: str | None) -> Html:
    """The program's source with line numbers, the lines of frames marked."""
    if source is None:
        return Html('<p class="note">The program\'s source is not in this store.</p>')
    hits = {f.get("line") for f in frames if f.get("file") == file}
    lines = source.splitlines()[:SOURCE_LINES_MAX]
    return h('<pre class="source">{}</pre>', join(
        h('<span class="sl{}" id="L{}"><span class="ln">{}</span>{}</span>\n',
          " hit" if n in hits else "", n, n, text) for n, text in enumerate(lines, 1)))


def trace_section(data: dict) -> Html:
    """The slider through a trace-mode task's recorded steps."""
    steps = data["steps"]
    if not steps:
        return Html("")
    tid = data["detail"]["id"]
    step = data.get("step") or len(steps)
    viewing = (h('Viewing recorded step {} of {} (committed {}). <a href="/tasks/{}#frames">'
                 'Back to the latest state</a>', step, len(steps), when(steps[step - 1][1]), tid)
               if data.get("step") else
               h("The task runs in trace mode: {} steps recorded.", len(steps)))
    return h('<form method="get" action="/tasks/{}" class="trace" id="trace">'
             '<label>step <input type="range" name="step" min="1" max="{}" value="{}" '
             'id="trace-step"> <output id="trace-shown">{}</output></label> '
             '<button>View</button><p class="note">{}</p></form>',
             tid, len(steps), step, step, viewing)


def actions_section(d: dict, who: Any, message_text: str, message_error: str | None) -> Html:
    """Send a message (read as Flowmetal data first), cancel, export."""
    if d["status"] in ("done", "failed", "cancelled", "moved"):
        return Html("")
    if not who.may_write:
        return Html('<p class="note">This token may only read: no actions.</p>')
    tid = d["id"]
    problem = h('<p class="error" id="message-error">{}</p>', message_error) \
        if message_error else ""
    return h('<section class="actions"><h2>Actions</h2>'
             '<form method="post" action="/tasks/{tid}/messages" class="message">'
             '<input type="hidden" name="csrf" value="{csrf}">'
             '<label>Message (Flowmetal data, read before it is sent)'
             '<textarea name="form" rows="3" spellcheck="false" required>{text}</textarea>'
             '</label>{problem}<button id="send">Send</button></form>'
             '<form method="post" action="/tasks/{tid}/cancel" class="inline">'
             '<input type="hidden" name="csrf" value="{csrf}">'
             '<button id="cancel">Cancel the task</button></form> '
             '<form method="post" action="/tasks/{tid}/export" class="inline">'
             '<input type="hidden" name="csrf" value="{csrf}">'
             '<button id="export" title="downloads the export file; the task is marked '
             'moved here">Export (moves it out)</button></form></section>',
             tid=tid, csrf=who.csrf, text=message_text, problem=problem)


def task_page(data: dict, who: Any, events: str, message_text: str = "",
              message_error: str | None = None) -> Html:
    """One task: state, result or error, actions, trace slider, frames, timeline,
    output, inbox, outbox and program source.  ``events`` is its SSE URL."""
    d = data["detail"]
    live = live_sections(data)
    timeline = Timeline(d["id"], d["created"], d["children"])
    rows = join(timeline.row(e) for e in data["events"])
    left_out = h('<li class="note">… {} earlier entries left out</li>',
                 data["events_left_out"]) if data["events_left_out"] else ""
    output = join(h('<span data-seq="{}">{}</span>', seq, text) for seq, text in data["output"])
    if data.get("step") is not None:
        frames = frames_section(data["step_frames"], data["step_problem"], data.get("file"))
        shown_frames = data["step_frames"]
    else:
        frames = live["live-frames"]
        shown_frames = d["frames"]
    body = h('<main id="task" data-events="{events}"><h1>Task <code>{id}</code> '
             '<span class="name">{name}</span></h1>'
             '<section id="live-status">{status}</section>'
             '<section id="live-result">{result}</section>{actions}'
             '<section><h2 id="frames">Continuation</h2>{trace}<div id="live-frames">'
             '{frames}</div></section>'
             '<section><h2>Output</h2><pre class="output" id="output">{output}</pre></section>'
             '<section><h2>Timeline</h2><ol class="timeline" id="timeline">{left}{rows}</ol>'
             '</section>'
             '<section><h2>Inbox</h2><div id="live-inbox">{inbox}</div></section>'
             '<section><h2>Outbox</h2><div id="live-outbox">{outbox}</div></section>'
             '<section><h2>Program</h2>{source}</section></main>',
             events=events, id=d["id"], name=d["name"], status=live["live-status"],
             result=live["live-result"],
             actions=actions_section(d, who, message_text, message_error),
             trace=trace_section(data), frames=frames, output=output, left=left_out,
             rows=rows, inbox=live["live-inbox"], outbox=live["live-outbox"],
             source=source_section(data["source"], shown_frames, data.get("file")))
    return layout(f"Task {d['id']}", body, who, "tasks")


# -- sequences ------------------------------------------------------------------------

def _run_events(rows: list[dict]) -> Html:
    if not rows:
        return Html('<span class="note">no task events yet</span>')
    items = []
    for r in rows:
        took = "" if r["finished"] is None else f" in {duration(r['finished'] - r['triggered'])}"
        result = h(' <span class="badge r-{}">{}</span>', r["result"], r["result"]) \
            if r["result"] else ""
        items.append(h('<li><b>{}</b> {}{}{}{}</li>', r["task"], r["phase"], result,
                       f" ({r['status']})" if r["status"] else "", took +
                       (f", {r['worker']}" if r["worker"] else "")))
    return h('<ol class="task-events">{}</ol>', join(items))


def _targets(targets: list | None) -> str:
    return ", ".join(f"{t.get('criteria')} ({charts._fmt(t['targetValue'])})"
                     if type(t.get("targetValue")) in (int, float) else str(t.get("criteria"))
                     for t in targets or [])


def evaluation_section(key: tuple, kept: dict) -> Html:
    """A service's kept evaluations: the latest one's indicators against their targets,
    and a chart of each indicator over the evaluations kept."""
    project, stage, service = key
    title = h("<h3>{} / {} / {}</h3>", project, stage, service)
    if kept["error"]:
        return h('{}<p class="error">{}</p>', title, kept["error"])
    items = kept["items"]
    latest = items[-1]["evaluation"]
    rows = join(h('<tr><td>{}</td><td class="num">{}</td><td>{}</td><td>{}</td>'
                  '<td><span class="badge r-{}">{}</span></td><td class="num">{}</td></tr>',
                  r.get("displayName") or r["value"].get("metric"),
                  "" if r["value"].get("value") is None else charts._fmt(r["value"]["value"]),
                  _targets(r.get("passTargets")), _targets(r.get("warningTargets")),
                  r.get("status"), r.get("status"), r.get("score"))
                for r in latest.get("indicatorResults") or [])
    charts_ = join(charts.indicator_chart(
        f"{r['value'].get('metric')} over the last {len(items)} evaluations",
        charts.indicator_points(items, r["value"].get("metric")))
        for r in latest.get("indicatorResults") or [])
    return h('<section class="evaluation">{}<p>Latest: <span class="badge r-{}">{}</span> '
             'score {}% (evaluation #{}, {})</p>'
             '<table class="list"><thead><tr><th>indicator</th><th>value</th><th>pass</th>'
             '<th>warning</th><th>status</th><th>score</th></tr></thead><tbody>{}</tbody>'
             '</table><div class="charts">{}</div>'
             '<p class="legend"><span class="k-values">value</span> '
             '<span class="k-pass">pass target</span> '
             '<span class="k-warning">warning target</span></p></section>',
             title, latest.get("result"), latest.get("result"), latest.get("score"),
             items[-1]["id"], when(items[-1]["at"]), rows, charts_)


def sequences_page(data: dict, who: Any) -> Html:
    """Stages and their runs (newest first), each run's task events, and the kept
    evaluations per service with their charts."""
    warnings = join(h('<p class="warning">{}</p>', w) for w in data["warnings"])
    projects = sorted({r["project"] for r in data["runs"]} | set(data["stages"]))
    parts = []
    for project in projects:
        runs = [r for r in data["runs"] if r["project"] == project]
        order = list(data["stages"].get(project, []))
        order += sorted({r["stage"] for r in runs} - set(order))
        stages = []
        for stage in order:
            mine = [r for r in runs if r["stage"] == stage]
            rows = join(h('<tr><td><a href="/tasks/{}">{}</a></td><td>{}</td><td>{}</td>'
                          '<td><span class="badge s-{}">{}</span> {}</td><td>{}</td></tr>',
                          r["task"], r["task"], r["sequence"], r["service"], r["state"],
                          r["state"], r["detail"], _run_events(r["task_events"]))
                        for r in mine)
            table = h('<table class="list runs"><thead><tr><th>run</th><th>sequence</th>'
                      '<th>service</th><th>state</th><th>task events</th></tr></thead>'
                      '<tbody>{}</tbody></table>', rows) if mine else \
                Html('<p class="note">No runs.</p>')
            stages.append(h('<section class="stage"><h3>Stage {}</h3>{}</section>', stage,
                            table))
        parts.append(h('<section class="project"><h2>Project {}</h2>{}</section>', project,
                       join(stages)))
    if not parts:
        parts.append(Html('<p class="note">No shipyard and no runs yet: apply a shipyard '
                          '(<code>flowmetal shipyard apply</code>) and trigger a sequence.</p>'))
    evaluations = join(evaluation_section(k, v) for k, v in data["evaluations"].items())
    if evaluations:
        evaluations = h("<section><h2>Evaluations</h2>{}</section>", evaluations)
    body = h("<main><h1>Sequences</h1>{}{}{}</main>", warnings, join(parts), evaluations)
    return layout("Sequences", body, who, "sequences")
