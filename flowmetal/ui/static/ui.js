// Flowmetal's web UI: live updates of the pages the server renders, from its
// server-sent events.  The HTML an event carries was rendered (and escaped) by the
// server, as the page was; output text is added as text, never as markup.
"use strict";

function fragment(html) {
  const t = document.createElement("template");
  t.innerHTML = html;
  return t.content;
}

function ages(table) {
  // Ages count on from the server's clock at the time the page was made.
  const start = Date.now() / 1000;
  const serverNow = parseFloat(table.dataset.now);
  const show = (s) => {
    s = Math.max(0, Math.floor(s));
    const two = (n) => String(n).padStart(2, "0");
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + two(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + two(Math.floor(s % 3600 / 60)) + "m";
    return Math.floor(s / 86400) + "d " + two(Math.floor(s % 86400 / 3600)) + "h";
  };
  setInterval(() => {
    const now = serverNow + Date.now() / 1000 - start;
    for (const cell of table.querySelectorAll("td.age")) {
      cell.textContent = show(now - parseFloat(cell.dataset.created));
    }
  }, 1000);
}

function followList(table) {
  ages(table);
  const url = table.dataset.events;
  if (!url) return;
  const body = table.tBodies[0];
  const source = new EventSource(url);
  source.addEventListener("counts", (e) => {
    const old = document.getElementById("counts");
    old.replaceWith(fragment(JSON.parse(e.data).html));
  });
  source.addEventListener("row", (e) => {
    const d = JSON.parse(e.data);
    const row = body.querySelector(`tr[data-id="${CSS.escape(d.id)}"]`);
    if (row) row.replaceWith(fragment(d.html));
  });
  source.addEventListener("gone", (e) => {
    const d = JSON.parse(e.data);
    const row = body.querySelector(`tr[data-id="${CSS.escape(d.id)}"]`);
    if (row) row.classList.add("gone");
  });
  source.addEventListener("new", (e) => {
    const d = JSON.parse(e.data);
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    for (const html of d.rows.slice().reverse()) body.prepend(fragment(html));
    const rows = body.querySelectorAll("tr");
    for (let i = 50; i < rows.length; i++) rows[i].remove();
    if (d.more) {
      const news = document.getElementById("news");
      news.textContent = "More new tasks than a page: reload to see them all.";
      news.hidden = false;
    }
  });
}

function followTask(main) {
  const url = main.dataset.events;
  const source = new EventSource(url);
  const output = document.getElementById("output");
  const timeline = document.getElementById("timeline");
  source.addEventListener("output", (e) => {
    const d = JSON.parse(e.data);
    const line = document.createElement("span");
    line.dataset.seq = d.seq;
    line.textContent = d.text;
    output.append(line);
  });
  source.addEventListener("log", (e) => {
    timeline.append(fragment(JSON.parse(e.data).html));
  });
  source.addEventListener("live", (e) => {
    const d = JSON.parse(e.data);
    for (const [id, html] of Object.entries(d.sections)) {
      const el = document.getElementById(id);
      if (el) el.replaceChildren(fragment(html));
    }
    main.dataset.status = d.status;
  });
  source.addEventListener("end", (e) => {
    main.dataset.status = JSON.parse(e.data).status;
    main.dataset.ended = "true";
    const actions = document.querySelector("section.actions");
    if (actions) actions.remove();
    source.close();
  });
}

function traceSlider() {
  const slider = document.getElementById("trace-step");
  if (!slider) return;
  const shown = document.getElementById("trace-shown");
  slider.addEventListener("input", () => { shown.textContent = slider.value; });
  slider.addEventListener("change", () => { slider.form.submit(); });
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("tasks");
  if (table) followList(table);
  const main = document.getElementById("task");
  if (main) followTask(main);
  traceSlider();
});
