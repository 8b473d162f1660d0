/* m1-report's own script, for index.html and samples.html (loaded from the report folder: no network).
 *
 * - figures: each <script type="application/json" class="m1-figure"> is a Plotly figure drawn with plotly.min.js;
 * - tables with class "sortable": a click on a column header sorts the rows; a ".filters" box filters them;
 * - the question browser (samples.html): a task's questions load from its questions_<task>.js file when chosen;
 *   filters, a search and pages of questions; the chosen question with every run's answer.
 *
 * Text from the runs is only ever set with textContent (never innerHTML): model text cannot become markup.
 */
(function () {
  "use strict";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function each(list, fn) {
    Array.prototype.forEach.call(list, fn);
  }

  // ------------------------------------------------------------------------------------------------ figures

  function drawFigures() {
    each(document.querySelectorAll('script.m1-figure[type="application/json"]'), function (block) {
      var target = document.getElementById(block.getAttribute("data-target"));
      if (!target) return;
      if (typeof window.Plotly === "undefined") {
        target.textContent = "This figure needs plotly.min.js beside this page (keep the report folder together).";
        return;
      }
      var spec = JSON.parse(block.textContent);
      window.Plotly.newPlot(target, spec.data, spec.layout, {
        displaylogo: false,
        responsive: true,
        modeBarButtonsToRemove: ["select2d", "lasso2d"]
      });
    });
  }

  // ---------------------------------------------------------------------------------- sortable tables

  function sortKey(cell, numeric) {
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (!numeric) return raw.toLowerCase();
    var number = parseFloat(raw.replace(/[^0-9eE.+\-]/g, ""));
    return isNaN(number) ? null : number;
  }

  function makeSortable(table) {
    var heads = table.tHead.rows[0].cells;
    each(heads, function (th, column) {
      th.classList.add("sortable");
      th.title = "sort by this column";
      th.addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") === "num";
        var ascending = !th.classList.contains("sorted-asc");
        each(heads, function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(ascending ? "sorted-asc" : "sorted-desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = sortKey(a.cells[column], numeric), y = sortKey(b.cells[column], numeric);
          if (x === y) return 0;
          if (x === null || x === "") return 1;
          if (y === null || y === "") return -1;
          return (x < y ? -1 : 1) * (ascending ? 1 : -1);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }

  function makeFilters(box) {
    var table = document.getElementById(box.getAttribute("data-table"));
    if (!table) return;
    var selects = box.querySelectorAll("select");
    var count = box.querySelector("[data-count]");
    function apply() {
      var rows = table.tBodies[0].rows, shown = 0;
      each(rows, function (row) {
        var keep = true;
        each(selects, function (select) {
          if (!select.value) return;
          var columns = (select.getAttribute("data-columns") || select.getAttribute("data-column")).split(",");
          var hit = columns.some(function (c) { return row.cells[Number(c)].textContent === select.value; });
          if (!hit) keep = false;
        });
        row.hidden = !keep;
        if (keep) shown += 1;
      });
      if (count) count.textContent = shown + " of " + rows.length + " rows";
    }
    each(selects, function (select) { select.addEventListener("change", apply); });
    apply();
  }

  // ---------------------------------------------------------------------------------- the question browser

  var VERDICT_CLASS = { R: "v-R", W: "v-W", N: "v-N", "?": "v-Q", P: "v-P", "-": "" };

  function questionBrowser(page) {
    var runs = {};
    page.runs.forEach(function (run) { runs[run.index] = run; });
    var ui = {
      task: document.getElementById("qb-task"),
      status: document.getElementById("qb-status"),
      run: document.getElementById("qb-run"),
      search: document.getElementById("qb-search"),
      count: document.getElementById("qb-count"),
      list: document.getElementById("qb-list").tBodies[0],
      page: document.getElementById("qb-page"),
      prev: document.getElementById("qb-prev"),
      next: document.getElementById("qb-next"),
      view: document.getElementById("qb-view")
    };
    var state = { data: null, shown: [], page: 0, chosen: null };
    var size = page.page_size || 25;

    function verdictText(code) {
      return page.verdicts[code] || code;
    }

    function load(task, then) {
      window.M1Questions = window.M1Questions || {};
      if (window.M1Questions[task]) { then(window.M1Questions[task]); return; }
      var info = page.tasks.filter(function (t) { return t.task === task; })[0];
      ui.view.replaceChildren(el("p", "note", "Loading " + info.file + " …"));
      var script = document.createElement("script");
      script.src = info.file;
      script.onload = function () { then(window.M1Questions[task]); };
      script.onerror = function () {
        ui.view.replaceChildren(el("p", "warn", "Cannot load " + info.file + ": keep it beside samples.html."));
      };
      document.head.appendChild(script);
    }

    function haystack(question, data) {
      if (question.hay === undefined) {
        var parts = [question[1]];
        question[3].forEach(function (option) { parts.push(option[1]); });
        var texts = data.texts[question[0]];
        if (texts) texts.runs.forEach(function (r) { parts.push(r.answer, r.thinking, r.extracted); });
        question.hay = parts.join("\n").toLowerCase();
      }
      return question.hay;
    }

    function matches(question, data, status, column, needle) {
      var strip = question[4];
      if (status === "changed") {
        if (strip.indexOf("R") < 0 || (strip.indexOf("W") < 0 && strip.indexOf("N") < 0)) return false;
      } else if (status === "all-R") {
        if (!/^[R-]*R[R-]*$/.test(strip)) return false;
      } else if (status === "none-R") {
        if (strip.indexOf("R") >= 0 || strip.indexOf("P") >= 0) return false;
      } else if (status === "kept") {
        if (!question[5]) return false;
      } else if (status === "R" || status === "W" || status === "N" || status === "P") {
        if (column === null ? strip.indexOf(status) < 0 : strip.charAt(column) !== status) return false;
      }
      if (needle && haystack(question, data).indexOf(needle) < 0) return false;
      return true;
    }

    function filter() {
      var data = state.data;
      var status = ui.status.value;
      var column = ui.run.value === "" ? null : data.runs.indexOf(Number(ui.run.value));
      if (column === -1) column = -2; // the run did not evaluate this task: nothing matches "in" it
      var needle = ui.search.value.trim().toLowerCase();
      state.shown = data.questions.filter(function (q) {
        return column === -2 && (status === "R" || status === "W" || status === "N" || status === "P")
          ? false : matches(q, data, status, column, needle);
      });
      state.page = 0;
      ui.count.textContent = state.shown.length + " of " + data.questions.length + " questions";
      drawList();
    }

    function drawList() {
      var data = state.data;
      var pages = Math.max(1, Math.ceil(state.shown.length / size));
      state.page = Math.min(state.page, pages - 1);
      var rows = [];
      state.shown.slice(state.page * size, (state.page + 1) * size).forEach(function (question) {
        var tr = el("tr", "question" + (state.chosen === question ? " chosen" : ""));
        tr.appendChild(el("td", "num", question[0]));
        var text = el("td", "qtext", question[1]);
        text.title = question[1].slice(0, 600);
        tr.appendChild(text);
        tr.appendChild(el("td", "", question[2]));
        var strip = el("td", "strip");
        for (var c = 0; c < question[4].length; c += 1) {
          var code = question[4].charAt(c);
          var square = el("span", VERDICT_CLASS[code] || "");
          square.title = runs[data.runs[c]].label + ": " + verdictText(code);
          strip.appendChild(square);
        }
        if (question[5]) {
          var mark = el("small", "muted", " •");
          mark.title = "the runs' texts are kept for this question";
          strip.appendChild(mark);
        }
        tr.appendChild(strip);
        tr.addEventListener("click", function () { choose(question); });
        rows.push(tr);
      });
      ui.list.replaceChildren.apply(ui.list, rows);
      ui.page.textContent = "page " + (state.page + 1) + " of " + pages;
      ui.prev.disabled = state.page === 0;
      ui.next.disabled = state.page >= pages - 1;
    }

    function block(title, text, open) {
      var details = el("details");
      if (open) details.open = true;
      details.appendChild(el("summary", "", title));
      details.appendChild(el("pre", "", text));
      return details;
    }

    // K samples per question (lm-eval's repeats): the card's texts are sample 1's; one chip per sample
    function repeatsLine(entry) {
      var line = el("p", "repeats", "sample 1 of " + entry.k + " shown; " + entry.right + " of " + entry.k +
        " samples right. Each sample (the m1 scorer's verdict, extracted letter): ");
      entry.samples.forEach(function (sample, i) {
        var chip = el("span", "chip " + (VERDICT_CLASS[sample[0]] || ""), sample[1]);
        chip.title = "sample " + (i + 1) + ": " + verdictText(sample[0]) + ", extracted " + sample[1];
        line.appendChild(chip);
      });
      return line;
    }

    function choose(question) {
      state.chosen = question;
      drawList();
      var data = state.data;
      var texts = data.texts[question[0]];
      var view = [];
      view.push(el("h3", "", data.label + " · doc " + question[0]));
      view.push(el("pre", "question", question[1]));
      if (question[3].length) {
        var options = el("ul", "options");
        question[3].forEach(function (option) {
          var item = el("li", option[0] === question[2] ? "correct" : "", option[0] + ". " + option[1]);
          if (option[0] === question[2]) item.appendChild(el("span", "muted", "  ← correct"));
          options.appendChild(item);
        });
        view.push(options);
      } else {
        view.push(el("p", "", "Correct: " + question[2]));
      }
      if (texts && texts.prompt) view.push(block("prompt", texts.prompt, false));
      if (!texts) {
        view.push(el("p", "note", "The runs' texts are kept for " + page.limit + " questions per task " +
          "(--browser-limit); this question shows each run's verdict only."));
      }
      var byRun = {};
      if (texts) texts.runs.forEach(function (entry) { byRun[entry.run] = entry; });
      data.runs.forEach(function (runIndex, column) {
        var code = question[4].charAt(column);
        var entry = byRun[runIndex];
        var card = el("div", "run-card " + (VERDICT_CLASS[code] ? VERDICT_CLASS[code] + "-card" : ""));
        card.setAttribute("data-run", runs[runIndex].label);
        var head = el("div", "head");
        head.appendChild(el("strong", "", runs[runIndex].label));
        head.appendChild(el("span", "badge " + (VERDICT_CLASS[code] || ""), verdictText(code)));
        if (entry) {
          var extracted = entry.extracted + (entry.letter && entry.letter !== entry.extracted ? " (" + entry.letter + ")" : "");
          head.appendChild(el("span", "tag", "extracted " + extracted));
          var rule = el("span", "tag rule", "rule " + entry.rule);
          rule.title = entry.rule_text;
          head.appendChild(rule);
          if (entry.raw) head.appendChild(el("span", "tag", "from " + entry.raw));
          head.appendChild(el("span", "muted", entry.where));
        }
        card.appendChild(head);
        if (entry && entry.k > 1) card.appendChild(repeatsLine(entry));
        if (entry) {
          if (entry.disagrees) card.appendChild(el("p", "warn", entry.disagrees));
          if (entry.prompt) card.appendChild(block("prompt (this run's)", entry.prompt, false));
          card.appendChild(el("pre", "answer", entry.answer));
          var short = entry.thinking.length <= 600;
          card.appendChild(block("thinking (" + entry.thinking.length + " characters)", entry.thinking || "(none)", short));
        }
        view.push(card);
      });
      ui.view.replaceChildren.apply(ui.view, view);
      if (window.history && window.history.replaceState) {
        var hash = "#task=" + encodeURIComponent(data.task) + "&doc=" + encodeURIComponent(question[0]);
        window.history.replaceState(null, "", hash);
      }
    }

    function showTask(task, doc) {
      load(task, function (data) {
        state.data = data;
        state.chosen = null;
        filter();
        var first = null;
        if (doc !== undefined) first = data.questions.filter(function (q) { return q[0] === doc; })[0] || null;
        if (!first) first = state.shown.filter(function (q) { return q[5]; })[0] || state.shown[0] || null;
        if (first) {
          var index = state.shown.indexOf(first);
          if (index >= 0) state.page = Math.floor(index / size);
          choose(first);
        } else {
          ui.view.replaceChildren(el("p", "note", "No question matches."));
        }
      });
    }

    var timer = null;
    ui.task.addEventListener("change", function () { showTask(ui.task.value); });
    ui.status.addEventListener("change", function () { if (state.data) filter(); });
    ui.run.addEventListener("change", function () { if (state.data) filter(); });
    ui.search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { if (state.data) filter(); }, 200);
    });
    ui.prev.addEventListener("click", function () { state.page -= 1; drawList(); });
    ui.next.addEventListener("click", function () { state.page += 1; drawList(); });

    var wanted = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var pair = part.split("=");
      if (pair.length === 2) wanted[pair[0]] = decodeURIComponent(pair[1]);
    });
    var start = page.tasks.filter(function (t) { return t.task === wanted.task; })[0] || page.tasks[0];
    ui.task.value = start.task;
    showTask(start.task, wanted.task === start.task ? wanted.doc : undefined);
  }

  // ------------------------------------------------------------------------------------------------ start

  drawFigures();
  each(document.querySelectorAll("table.sortable"), makeSortable);
  each(document.querySelectorAll(".filters[data-table]"), makeFilters);
  var browser = document.getElementById("m1-questions");
  if (browser) {
    var page = JSON.parse(browser.textContent);
    if (page.tasks.length) questionBrowser(page);
  }
})();
