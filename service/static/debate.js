/* The debate view shared by the page and the widget (no framework, no build step).
 *
 * POSTs the question to /v1/debates with Accept: text/event-stream (EventSource cannot POST) and
 * reads the Server-Sent Events from the response body. Model output is untrusted: it is only ever
 * put in the page through textContent, never as HTML.
 */
var ConsensusCore = (function () {
  "use strict";

  var SHARE_CHARS = 200, QUESTION_CHARS = 300, THREAD_QUESTION_CHARS = 100; // the same limits as service/web.py
  var TOKENS = "consensus.thread-token."; // localStorage: a publishable key's thread token, by thread (the page only)

  /** Whitespace collapsed, cut to `limit` characters with an ellipsis: exactly what web.shorten does. */
  function shorten(text, limit) {
    var flat = String(text || "").split(/\s+/).filter(Boolean).join(" ");
    var chars = Array.from(flat); // code points, as Python counts them
    if (chars.length <= limit) return flat;
    var cut = chars.slice(0, limit - 1);
    var space = cut.lastIndexOf(" ");
    if (chars[limit - 1] === " " || space >= Math.floor(limit / 2)) {
      return cut.slice(0, chars[limit - 1] !== " " ? space : cut.length).join("").replace(/\s+$/, "") + "\u2026";
    }
    return cut.join("").replace(/\p{M}+$/u, "") + "\u2026"; // a hard cut inside a word
  }

  /** The shared text (question, shortened consensus, link) as WhatsApp and e-mail links; a follow-up's names its
   * thread ("Thread of 3 questions:", each question numbered on its own line), exactly as web.share_links does. */
  function shareLinks(t, question, consensus, url, earlier) {
    var asked = shorten(question, QUESTION_CHARS), subject = shorten(question, 100);
    if (earlier && earlier.length) {
      var named = t("Thread of {n} questions", { n: earlier.length + 1 });
      asked = named + ":\n" + earlier.concat([question]).map(function (q, i) {
        return (i + 1) + ". " + shorten(q, THREAD_QUESTION_CHARS);
      }).join("\n");
      subject = shorten(named + ": " + question, 100);
    }
    var text = asked + "\n\n" + t("Consensus") + ": " + shorten(consensus, SHARE_CHARS) + "\n\n" + url;
    return {
      url: url,
      text: text,
      whatsapp: "https://wa.me/?text=" + encodeURIComponent(text),
      mailto: "mailto:?subject=" + encodeURIComponent(subject) +
        "&body=" + encodeURIComponent(text.replace(/\n/g, "\r\n")),
    };
  }

  /** The letter of an anonymous label as an analyst may write it ("A", "Panelist A", "(a)"): consensus.claims. */
  function labelLetter(label) {
    var m = /^[\W_]*(?:pan[e\u00e9]ll?(?:ist|ista|iste)?s?[\W_]*)?([a-z])[\W_]*$/i.exec(String(label || "").trim());
    return m ? m[1].toUpperCase() : null;
  }

  function remember(root, token) {
    try { localStorage.setItem(TOKENS + root, token); } catch (e) { /* storage refused: this tab keeps it */ }
  }
  function remembered(root) {
    try { return localStorage.getItem(TOKENS + root); } catch (e) { return null; }
  }

  /** The "answer" field of a JSON reply that is still arriving (the raw text when it is not JSON). */
  function partialAnswer(raw) {
    var s = raw.replace(/^\s*(?:```(?:json)?\s*)?/, "");  // leading blank lines, and a code fence
    if (s.charAt(0) !== "{") return raw;
    var m = /"answer"\s*:\s*"/.exec(s);
    if (!m) return "";
    var out = "", i = m.index + m[0].length;
    var escapes = { n: "\n", t: "\t", r: "", b: "", f: "", '"': '"', "\\": "\\", "/": "/" };
    while (i < s.length) {
      var c = s.charAt(i);
      if (c === '"') break;
      if (c !== "\\") { out += c; i += 1; continue; }
      var n = s.charAt(i + 1);
      if (!n) break;
      if (n === "u") {
        var hex = s.substr(i + 2, 4);
        if (hex.length < 4) break;
        out += String.fromCharCode(parseInt(hex, 16));
        i += 6;
        continue;
      }
      out += n in escapes ? escapes[n] : n;
      i += 2;
    }
    return out;
  }

  /** One SSE block ("id: 3\nevent: x\ndata: {...}") as {id, event, data}; null for comments. */
  function parseBlock(block) {
    var ev = { id: null, event: "message", data: [] };
    block.split(/\r\n|\r|\n/).forEach(function (line) {
      if (!line || line.charAt(0) === ":") return;
      var i = line.indexOf(":");
      var field = i < 0 ? line : line.slice(0, i);
      var value = i < 0 ? "" : line.slice(i + 1);
      if (value.charAt(0) === " ") value = value.slice(1);
      if (field === "data") ev.data.push(value);
      else if (field === "event") ev.event = value;
      else if (field === "id") ev.id = value;
    });
    if (!ev.data.length) return null;
    ev.data = ev.data.join("\n");
    return ev;
  }

  /** Read a fetch Response as SSE, calling onEvent per event; stop when it returns false. */
  async function readEvents(response, onEvent) {
    var reader = response.body.getReader(), decoder = new TextDecoder(), buffer = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) return;
      buffer += decoder.decode(chunk.value, { stream: true });
      var m;
      while ((m = /\r\n\r\n|\n\n|\r\r/.exec(buffer))) {
        var ev = parseBlock(buffer.slice(0, m.index));
        buffer = buffer.slice(m.index + m[0].length);
        if (ev && onEvent(ev) === false) { reader.cancel().catch(function () {}); return; }
      }
    }
  }

  function translator(cfg) {
    return function (msgid, values) {
      var s = (cfg.messages && cfg.messages[msgid]) || msgid;
      Object.keys(values || {}).forEach(function (k) { s = s.split("{" + k + "}").join(String(values[k])); });
      return s;
    };
  }

  function h(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }
  var RESUME_FOR_MS = 60000;

  /** A copy-link button: the clipboard API, or a hidden textarea where it is not available. */
  function enhanceCopy(button, getUrl, status, copiedText) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var url = getUrl();
      var done = function () {
        status.textContent = copiedText;
        setTimeout(function () { status.textContent = ""; }, 4000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(url).then(done, function () { legacyCopy(button, url); done(); });
      } else {
        legacyCopy(button, url);
        done();
      }
    });
  }

  function legacyCopy(near, text) {
    var area = h("textarea", "cx-sr");
    area.value = text;
    near.parentNode.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    area.remove();
    near.focus();
  }

  /** Wire a question box (the markup of templates/_box.html) to the API. */
  function mount(box, opts) {
    var role = function (r) { return box.querySelector('[data-role="' + r + '"]'); };
    var el = {};
    ["form", "question", "submit", "switch", "lang", "error", "progress", "state", "round", "meter", "pct", "cols",
      "consensus", "notes", "c-check", "c-meter", "c-pct", "c-text", "c-claims", "c-claim-groups", "c-majority",
      "c-dissent", "c-dropped", "c-dropped-count", "c-dropped-list", "positions", "positions-table",
      "share", "permalink", "whatsapp", "mailto", "copy", "copied", "announce",
      "thread", "thread-title", "thread-list", "follow-form", "follow-question", "follow-submit",
    ].forEach(function (r) { el[r] = role(r); });
    var t = translator(opts);
    var api = opts.api || "";
    var ids = box.dataset.ids || "cx";
    var current = null;
    var thread = newThread(opts.thread);

    /** The thread this box continues: its first debate's id, the cancel token a publishable key's thread needs,
     * the debate a follow-up continues, and its finished turns (onPage: shown by the permalink around the box). */
    function newThread(given) {
      var th = { root: null, token: null, last: null, turns: [], closed: false };
      if (given) {
        th.root = given.thread;
        th.last = given.of;
        th.turns = (given.questions || []).map(function (q) { return { question: q, onPage: true }; });
        th.token = given.token ? remembered(th.root) : null;
        th.closed = !!given.token && !th.token; // only the browser that started it holds the token
      }
      return th;
    }

    enhanceCopy(el.copy, function () { return el.permalink.href; }, el.copied, t("Link copied"));

    el.question.addEventListener("keydown", function (e) {
      // Enter asks, Shift+Enter is a new line; never while an input method is composing (Indic keyboards).
      if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey && !e.isComposing) {
        e.preventDefault();
        el.form.requestSubmit(el.submit);
      }
    });
    el.form.addEventListener("submit", function (e) {
      if (e.submitter && e.submitter === el["switch"]) {
        if (opts.onSwitchLanguage) {
          e.preventDefault();
          opts.onSwitchLanguage(el.lang.value, el.question.value);
        }
        return; // the page reloads itself in the chosen language
      }
      e.preventDefault();
      if (current && current.active) return;
      var question = el.question.value.trim();
      if (!question) {
        // Only spaces passed `required` and nothing said why nothing happened: say it in the page's language.
        el.question.value = "";
        el.question.setCustomValidity(t("Type your question here"));
        el.question.reportValidity();
        el.question.focus();
        return;
      }
      current = start(question, el.lang.value);
    });
    el.question.addEventListener("input", function () { el.question.setCustomValidity(""); });
    el["follow-question"].addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey && !e.isComposing) {
        e.preventDefault();
        el["follow-form"].requestSubmit(el["follow-submit"]);
      }
    });
    el["follow-form"].addEventListener("submit", function (e) {
      e.preventDefault();
      if ((current && current.active) || !thread.last) return;
      var field = el["follow-question"], question = field.value.trim();
      if (!question) {
        field.value = "";
        field.setCustomValidity(t("Type your question here"));
        field.reportValidity();
        field.focus();
        return;
      }
      current = start(question, el.lang.value, true);
    });
    el["follow-question"].addEventListener("input", function () { el["follow-question"].setCustomValidity(""); });
    if (opts.thread && !thread.closed) show(el["follow-form"]);

    function headers(extra) {
      var out = Object.assign({}, extra);
      if (opts.key) out.Authorization = "Bearer " + opts.key;
      return out;
    }
    function show(e, on) { e.hidden = on === false; }
    function announce(text) { el.announce.textContent = ""; setTimeout(function () { el.announce.textContent = text; }, 50); }
    function roundLabel(i) { return i === 0 ? t("Opening answers") : t("Round {n}", { n: i }); }
    function reason(kind, name) { return t((opts.reasons || {})[kind] || opts.unknown_reason || "{name}", { name: name }); }
    function setMeter(meter, pct, score, text) {
      meter.value = score || 0;
      pct.textContent = score == null ? "" : text || Math.round(score * 100) + "%";
    }
    /** The agreement as every surface words it (web.agreement_text): never a bare 100% when seats are missing. */
    function agreementText(score, answered, seats, missing) {
      var pct = Math.round(score * 100) + "%";
      if (!missing || !missing.length || answered == null || seats == null) return pct;
      return t("{pct} of {answered} of {seats} answers ({missing} missing)",
        { pct: pct, answered: answered, seats: seats, missing: missing.join(", ") });
    }
    function showError(message, debateId) {
      el.error.replaceChildren(h("p", null, message));
      if (debateId) {
        var a = h("a", null, (opts.base || location.origin) + "/d/" + debateId);
        a.href = a.textContent;
        var p = h("p");
        p.append(a);
        el.error.append(p);
      }
      show(el.error);
    }

    function reset() {
      el.cols.replaceChildren();
      el.notes.replaceChildren();
      el["c-check"].replaceChildren();
      el["c-claim-groups"].replaceChildren();
      el["c-text"].textContent = "";
      el["c-text"].setAttribute("aria-busy", "true");
      el["c-majority"].textContent = "";
      el["c-dissent"].replaceChildren();
      el["c-dropped-list"].replaceChildren();
      el["positions-table"].replaceChildren();
      el.round.textContent = "";
      [el.error, el.consensus, el["c-check"], el["c-claims"], el["c-dropped"], el.positions, el.share,
        el["follow-form"]].forEach(function (e) { show(e, false); });
      setMeter(el.meter, el.pct, null);
    }

    /** The thread so far above the live view: the earlier questions (not those the permalink shows) with their
     * consensus, then the question being asked. Hidden for a question that starts a thread. */
    function showThread(question) {
      var items = [], before = 0;
      thread.turns.forEach(function (x) {
        if (x.onPage) { before += 1; return; }
        var li = h("li", "cx-turn-earlier"), q = h("p", "cx-thread-q"), a = h("a", null, x.question);
        a.href = x.url;
        q.dir = "auto";
        q.append(a);
        var text = h("div", "cx-text", x.consensus);
        text.dir = "auto";
        li.append(q, text);
        items.push(li);
      });
      var now = h("li", "cx-turn-current"), q = h("p", "cx-thread-q", question);
      q.dir = "auto";
      now.append(q);
      items.push(now);
      el["thread-list"].start = before + 1;
      el["thread-list"].replaceChildren.apply(el["thread-list"], items);
      el["thread-title"].textContent = t("Thread of {n} questions", { n: thread.turns.length + 1 });
      show(el.thread, thread.turns.length > 0);
    }

    function start(question, lang, followUp) {
      var st = { active: true, id: null, seq: 0, done: false, cols: new Map(), panel: [], rounds: [], synth: "" };
      if (!followUp) thread = newThread(null);
      reset();
      showThread(question);
      show(el.progress);
      el.state.textContent = t("Running\u2026");
      el.submit.setAttribute("aria-disabled", "true");
      el["follow-submit"].setAttribute("aria-disabled", "true");
      run().catch(function () { showError(t("The service could not be reached. Try again."), st.id); })
        .finally(function () {
          st.active = false;
          el.submit.removeAttribute("aria-disabled");
          el["follow-submit"].removeAttribute("aria-disabled");
          el.state.textContent = "";
          if (thread.last && !thread.closed) {
            if (st.done) el["follow-question"].value = "";
            show(el["follow-form"]);
          }
        });
      return st;

      async function run() {
        var resp;
        // A follow-up keeps its thread's language unless the question is clearly in another: the service decides.
        var body = followUp ? { question: question, follow_up_of: thread.last } : { question: question, language: lang };
        var extra = { "Content-Type": "application/json", Accept: "text/event-stream" };
        if (followUp && thread.token) extra["X-Cancel-Token"] = thread.token;
        try {
          resp = await fetch(api + "/v1/debates", {
            method: "POST", credentials: "omit", cache: "no-store", headers: headers(extra), body: JSON.stringify(body),
          });
        } catch (e) {
          showError(await unreachable());
          return;
        }
        if (!resp.ok) { showError(await refusal(resp)); return; }
        // A publishable key's caller is given the thread's token once, with its first debate: follow-ups need it.
        if (!followUp) thread.token = resp.headers.get("X-Cancel-Token");
        await follow(resp);
        // A cut stream is resumed from the last event id; the debate itself went on on the server. A restart
        // (its shutdown grace, 10 s by default, then the start) takes longer than a blip: keep trying for a
        // minute after the last event that arrived.
        var until = Date.now() + RESUME_FOR_MS;
        for (var attempt = 1; !st.done && st.id && Date.now() < until; attempt++) {
          await sleep(Math.min(1000 * attempt, 5000));
          var seen = st.seq;
          try {
            var again = await fetch(api + "/v1/debates/" + encodeURIComponent(st.id) + "/events?after=" + st.seq,
              { credentials: "omit", cache: "no-store", headers: headers({ Accept: "text/event-stream" }) });
            if (again.ok) await follow(again);
            else if (again.status >= 400 && again.status < 500) break;  // refused or gone: retrying won't help
          } catch (e) { /* try again */ }
          if (st.seq > seen) { until = Date.now() + RESUME_FOR_MS; attempt = 0; }
        }
        if (!st.done) showError(t("The service could not be reached. Try again."), st.id);
      }

      async function follow(resp) {
        try { await readEvents(resp, onEvent); } catch (e) { /* the stream was cut: resumed by run() */ }
      }

      async function unreachable() {
        if (opts.crossOrigin) {
          // An opaque no-cors answer means the service is up and the browser refused this origin (CORS).
          try {
            await fetch(api + "/healthz", { mode: "no-cors", credentials: "omit", cache: "no-store" });
            return t("This site is not allowed to use this key.");
          } catch (e) { /* really unreachable */ }
        }
        return t("The service could not be reached. Try again.");
      }

      async function refusal(resp) {
        var err = {};
        try { err = (await resp.json()).error || {}; } catch (e) { /* not JSON */ }
        var wait = parseInt(resp.headers.get("Retry-After") || "", 10);
        if (!(wait > 0)) wait = 1;
        if (resp.status === 429) return t("Too many requests; try again in {n} s.", { n: wait });
        if (resp.status === 503) return t("The service is busy; try again in {n} s.", { n: wait });
        if (followUp && (err.code === "cancel_token_required" || err.code === "not_owner")) {
          thread.closed = true;
          return t("Only whoever started this thread can continue it.");
        }
        if (followUp && err.code === "thread_too_long") {
          thread.closed = true;
          return t("This thread has reached its length limit.");
        }
        if (resp.status === 403) return t("This site is not allowed to use this key.");
        if (resp.status === 401) {
          return err.code === "missing_api_key" ? t("This page is not set up to ask questions yet.") : t("The API key was refused.");
        }
        if (resp.status === 422 || resp.status === 413) return t("The question could not be accepted.");
        return t("The service could not be reached. Try again.");
      }

      function onEvent(ev) {
        var data;
        try { data = JSON.parse(ev.data); } catch (e) { return; }
        if (ev.id) st.seq = Math.max(st.seq, parseInt(ev.id, 10) || 0);
        if (data.debate_id) st.id = data.debate_id;
        if (st.id && !thread.root) {
          thread.root = st.id;
          if (thread.token && opts.remember) remember(st.id, thread.token);
        }
        switch (ev.event) {
          case "debate.started": onStarted(data.data || {}); break;
          case "answer.delta": onDelta(data); break;
          case "answer.completed": onAnswer(data.answer, true); break;
          case "round.completed": onRound(data.round_result); break;
          case "consensus.delta": onSynthDelta(data.delta || "", restarted(data)); break;
          case "consensus.completed": onConsensus(data.consensus); break;
          case "debate.completed":
          case "debate.failed":
            st.done = true;
            onResult(data.result);
            return false;
        }
      }

      function onStarted(info) {
        st.panel = (info.panel || []).map(function (p) { return p.name; });
        (info.panel || []).forEach(function (p) { column(p.name, p.model); });
      }

      function column(name, model) {
        var c = st.cols.get(name);
        if (c) {
          if (model && !c.model.textContent) c.model.textContent = model;
          return c;
        }
        if (st.panel.indexOf(name) < 0) st.panel.push(name);
        var sec = h("section", "cx-col"), head = h("h3");
        head.id = ids + "-col-" + (st.cols.size + 1);
        sec.setAttribute("aria-labelledby", head.id);
        var modelEl = h("span", "cx-model", model || ""), badge = h("span", "cx-badge", t("Failed"));
        badge.hidden = true;
        head.append(h("span", "cx-name", name), " ", modelEl, " ", badge);
        var waiting = h("p", "cx-waiting", t("Waiting for the answer\u2026"));
        sec.append(head, waiting);
        el.cols.append(sec);
        c = { sec: sec, model: modelEl, badge: badge, waiting: waiting, turns: new Map() };
        st.cols.set(name, c);
        return c;
      }

      function turn(c, round) {
        var tr = c.turns.get(round);
        if (tr) return tr;
        var div = h("div", "cx-turn"), text = h("div", "cx-text"), fin = h("p", "cx-final");
        text.dir = "auto";
        fin.hidden = true;
        div.append(h("h4", null, roundLabel(round)), text, fin);
        c.sec.append(div);
        c.waiting.hidden = true;
        tr = { div: div, text: text, fin: fin, raw: "", ok: null };
        c.turns.set(round, tr);
        return tr;
      }

      // A retried call (or a fallback synthesizer) starts its stream over: what it showed before is void.
      function restarted(d) { return !!(d.data && d.data.restart); }

      function onDelta(d) {
        var tr = turn(column(d.panelist), d.round);
        tr.raw = (restarted(d) ? "" : tr.raw) + (d.delta || "");
        tr.text.textContent = partialAnswer(tr.raw);
      }

      function onAnswer(a, live) {
        if (!a) return;
        var c = column(a.panelist, a.model), tr = turn(c, a.round);
        if (a.error) {
          tr.ok = false;
          tr.text.textContent = reason(a.error.kind, a.panelist);
          tr.text.className = "cx-text cx-reason";
          tr.fin.hidden = true;
        } else {
          tr.ok = true;
          tr.text.textContent = a.answer;
          tr.text.className = "cx-text";
          if (a.final_answer) {
            var strong = h("strong", null, a.final_answer);
            strong.dir = "auto";
            tr.fin.replaceChildren(t("Final answer") + ": ", strong);
            tr.fin.hidden = false;
          }
        }
        var failed = Array.from(c.turns.values()).every(function (x) { return x.ok === false; });
        c.badge.hidden = !failed;
        c.sec.classList.toggle("cx-col-failed", failed);
        if (live) announce(a.error ? reason(a.error.kind, a.panelist) : t("{name} answered.", { name: a.panelist }));
      }

      function onRound(r) {
        if (!r) return;
        st.rounds = st.rounds.filter(function (x) { return x.index !== r.index; }).concat([r]);
        el.round.textContent = roundLabel(r.index);
        var score = r.agreement ? r.agreement.score : null;
        var answered = (r.answers || []).filter(function (a) { return !a.error; }).map(function (a) { return a.panelist; });
        var missing = st.panel.filter(function (name) { return answered.indexOf(name) < 0; });
        var text = score == null ? "" : agreementText(score, answered.length, st.panel.length, missing);
        setMeter(el.meter, el.pct, score, text);
        positions(st.rounds);
        if (score != null) announce(roundLabel(r.index) + " \u00b7 " + t("Agreement") + " " + text);
      }

      function positions(rounds) {
        var head = h("tr");
        head.append(h("th", null, t("Panelist")));
        rounds.forEach(function (r) { head.append(h("th", null, roundLabel(r.index))); });
        head.querySelectorAll("th").forEach(function (th) { th.scope = "col"; });
        var body = h("tbody");
        st.panel.forEach(function (name) {
          var row = h("tr"), th = h("th", null, name);
          th.scope = "row";
          row.append(th);
          rounds.forEach(function (r) {
            var a = (r.answers || []).find(function (x) { return x.panelist === name; });
            var td = h("td", a && a.error ? "cx-failed" : null,
              !a ? "\u2014" : a.error ? t("Failed") : a.final_answer || shorten(a.answer, 60));
            td.dir = "auto";
            row.append(td);
          });
          body.append(row);
        });
        var thead = h("thead");
        thead.append(head);
        el["positions-table"].replaceChildren(thead, body);
        show(el.positions);
      }

      function onSynthDelta(delta, restart) {
        show(el.consensus);
        st.synth = (restart ? "" : st.synth) + delta;
        el["c-text"].textContent = st.synth;
      }

      function onConsensus(c) {
        if (!c) return;
        show(el.consensus);
        el["c-text"].textContent = c.answer;
        el["c-text"].setAttribute("aria-busy", "false");
        setMeter(el["c-meter"], el["c-pct"], c.agreement, agreementText(c.agreement, c.answered, c.seats, c.missing));
        el["c-majority"].textContent = c.majority || "\u2014";
        var items = (c.dissent || []).map(function (d) {
          var li = h("li"), who = h("strong", null, (d.panelists || []).join(", "));
          li.append(who, ": ", h("span", null, d.final_answer));
          if (d.excerpt) li.append(" \u2014 ", h("span", null, d.excerpt));
          return li;
        });
        if (!items.length) items = [h("li", "cx-none", t("No dissent: the panel agreed."))];
        el["c-dissent"].replaceChildren.apply(el["c-dissent"], items);
        var mark = checkMark(c);
        el["c-check"].className = "cx-check " + (mark && mark.ok ? "cx-check-ok" : "cx-check-fallback");
        el["c-check"].replaceChildren.apply(el["c-check"], mark ? mark.nodes : []);
        show(el["c-check"], !!mark);
        var groups = claimGroups(c.claims || []);
        el["c-claim-groups"].replaceChildren.apply(el["c-claim-groups"], groups);
        show(el["c-claims"], groups.length > 0);
      }

      /** Whether the consensus passed the checks, or which fallback it is and why: as web.check_mark decides. */
      function checkMark(c) {
        var checks = c.checks || [];
        var failed = checks.filter(function (k) { return !k.passed; }).map(function (k) { return k.name; });
        // fallback with source "synthesis": a record from before sources, when every fallback was the majority answer
        var majority = c.source === "majority_answer" || (c.fallback && (c.source || "synthesis") === "synthesis");
        var ok = checks.length > 0 && !failed.length && !majority;
        if (!ok && !majority && !failed.length) return null;
        var nodes = [], rejected = c.rejected || [];
        var text = ok ? t("Checked against the panel's answers.") : !majority ? null
          : rejected.length ? t("The moderator's text did not pass the checks: this is the panel's verified majority answer.")
          : c.source === "majority_answer" && !c.attempts ? t("The moderator was not asked: this is the panel's verified majority answer.")
          : t("The moderator model failed; the majority answer is shown instead.");
        if (text) {
          var p = h("p", "cx-mark"), icon = h("span", "cx-mark-icon", ok ? "\u2713" : "\u26a0");
          icon.setAttribute("aria-hidden", "true");
          p.append(icon, " " + text);
          nodes.push(p);
        }
        if (ok && c.fallback) nodes.push(h("p", "cx-check-note", t("The moderator's first text was not used; this one passed the checks.")));
        if (rejected.length) {
          var ul = h("ul", "cx-rejected");
          rejected.forEach(function (w) {
            var code = h("code", null, (w.failed || []).map(function (k) { return k.name; }).join(", "));
            code.dir = "ltr";
            var li = h("li");
            li.append(t("Rejected text by {name}", { name: w.synthesizer }) + ": ", code);
            ul.append(li);
          });
          nodes.push(ul);
        }
        if (failed.length) {
          var f = h("p", "cx-failed-checks"), names = h("code", null, failed.join(", "));
          names.dir = "ltr";
          f.append(t("Failed") + ": ", names);
          nodes.push(f);
        }
        if (c.fallback_reason && (c.fallback || !ok)) {
          var why = h("p", "cx-why", c.fallback_reason);
          why.dir = "ltr";
          nodes.push(why);
        }
        return { ok: ok, nodes: nodes };
      }

      /** The claim map by kind, each claim with who holds it and its quotes on demand (as templates/_claims.html). */
      function claimGroups(claims) {
        var kinds = [["agreed", t("Agreed")], ["contested", t("Contested")], ["unique", t("Unique insights")]];
        var out = [];
        kinds.forEach(function (kind) {
          var items = claims.filter(function (k) { return k.kind === kind[0]; });
          if (!items.length) return;
          var group = h("div", "cx-claim-group"), ul = h("ul", "cx-claim-list");
          group.dataset.kind = kind[0];
          items.forEach(function (k) { ul.append(claimItem(k)); });
          group.append(h("h4", null, kind[1]), ul);
          out.push(group);
        });
        return out;
      }

      function claimItem(k) {
        var li = h("li", "cx-claim"), text = h("p", "cx-claim-text", k.text), who = h("p", "cx-who");
        li.dataset.kind = k.kind;
        text.dir = "auto";
        var supporters = k.supporters || [], opponents = k.opponents || [], quotes = k.quotes || {};
        who.append(h("strong", "cx-for", supporters.join(", ")));
        if (opponents.length) {
          var against = h("span", "cx-against");
          against.append(t("Against") + ": ", h("strong", null, opponents.join(", ")));
          who.append(" ", against);
        }
        li.append(text, who);
        var quoted = supporters.concat(opponents).filter(function (name) {
          return Object.prototype.hasOwnProperty.call(quotes, name) && quotes[name];
        });
        if (quoted.length) {
          var details = h("details", "cx-quotes"), list = h("ul");
          quoted.forEach(function (name) {
            var item = h("li"), q = h("q", null, quotes[name]);
            q.dir = "auto";
            item.append(h("strong", null, name), ": ", q);
            list.append(item);
          });
          details.append(h("summary", null, t("Quotes")), list);
          li.append(details);
        }
        return li;
      }

      /** The attributions the claim map's verification dropped in the last analysed round (web.dropped_attributions). */
      function showDropped(r) {
        var analysed = (r.rounds || []).filter(function (x) { return x.analysis; });
        var list = analysed.length ? analysed[analysed.length - 1].analysis.dropped || [] : [];
        var names = (r.panel || []).map(function (p) { return p.name; });
        var items = list.map(function (x) {
          var letter = labelLetter(x.panelist), i = letter ? letter.charCodeAt(0) - 65 : -1;
          var li = h("li"), who = h("strong", null, i >= 0 && i < names.length ? names[i] : x.panelist);
          var claimText = h("span", "cx-dropped-claim", x.claim), why = h("span", "cx-why", "(" + x.reason + ")");
          who.dir = claimText.dir = "auto";
          why.dir = "ltr";
          li.append(who, ": ", claimText);
          if (x.quote) {
            var q = h("q", null, x.quote);
            q.dir = "auto";
            li.append(" \u2014 ", q);
          }
          li.append(" ", why);
          return li;
        });
        el["c-dropped-list"].replaceChildren.apply(el["c-dropped-list"], items);
        el["c-dropped-count"].textContent = t("Dropped attributions: {n}", { n: items.length });
        show(el["c-dropped"], items.length > 0);
      }

      function onResult(r) {
        if (!r) return;
        (r.panel || []).forEach(function (p) { column(p.name, p.model); });
        (r.rounds || []).forEach(function (rnd) {
          (rnd.answers || []).forEach(function (a) { onAnswer(a, false); });
        });
        st.rounds = r.rounds || [];
        if (st.rounds.length) positions(st.rounds);
        var failures = [];
        st.rounds.forEach(function (rnd) {
          (rnd.answers || []).forEach(function (a) {
            if (a.error) {
              var words = reason(a.error.kind, a.panelist);
              if (failures.indexOf(words) < 0) failures.push(words);
            }
          });
        });
        var notes = [];
        if (r.status === "degraded" && failures.length) notes.push(t("Some panelists failed; the result is based on the others."));
        // Cancelled or interrupted is not failed: the note says it was stopped, as the permalink does.
        var stopped = r.status === "cancelled" || r.status === "interrupted";
        if (stopped) notes.push(t("The debate was stopped before it finished."));
        var nodes = notes.map(function (n) { return h("p", "cx-note", n); });
        if (failures.length) {
          var ul = h("ul", "cx-failures");
          failures.forEach(function (f) { ul.append(h("li", null, f)); });
          nodes.push(ul);
        }
        if (r.status === "failed" || !r.consensus) {
          var head = stopped ? [] : [h("p", null, t("The debate failed."))];
          el.error.replaceChildren.apply(el.error, head.concat(nodes));
          show(el.error);
          announce(stopped ? t("The debate was stopped before it finished.") : t("The debate failed."));
          return;
        }
        el.notes.replaceChildren.apply(el.notes, nodes);
        onConsensus(r.consensus);
        showDropped(r);
        var url = (opts.base || location.origin) + "/d/" + r.id;
        var earlier = thread.turns.map(function (x) { return x.question; });
        var links = shareLinks(t, r.question, r.consensus.answer, url, earlier);
        thread.turns.push({ question: r.question, consensus: r.consensus.answer, url: url });
        thread.last = r.id;
        el.permalink.href = url;
        el.permalink.textContent = url;
        el.whatsapp.href = links.whatsapp;
        el.mailto.href = links.mailto;
        show(el.share);
        announce(t("The consensus is ready."));
      }
    }
  }

  /** Whether this browser may continue a permalink's thread: it needs no token, or holds the one it was given. */
  function canFollowUp(given) {
    return !given.token || !!remembered(given.thread);
  }

  return { mount: mount, enhanceCopy: enhanceCopy, shareLinks: shareLinks, shorten: shorten,
    partialAnswer: partialAnswer, parseBlock: parseBlock, labelLetter: labelLetter, canFollowUp: canFollowUp };
})();
