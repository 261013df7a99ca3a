/* The debate view shared by the page and the widget (no framework, no build step).
 *
 * POSTs the question to /v1/debates with Accept: text/event-stream (EventSource cannot POST) and
 * reads the Server-Sent Events from the response body. Model output is untrusted: it is only ever
 * put in the page through textContent, never as HTML.
 */
var ConsensusCore = (function () {
  "use strict";

  var SHARE_CHARS = 200, QUESTION_CHARS = 300; // the same limits as service/web.py

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

  /** The shared text (question, shortened consensus, link) as WhatsApp and e-mail links. */
  function shareLinks(t, question, consensus, url) {
    var text = shorten(question, QUESTION_CHARS) + "\n\n" + t("Consensus") + ": " + shorten(consensus, SHARE_CHARS) + "\n\n" + url;
    return {
      url: url,
      text: text,
      whatsapp: "https://wa.me/?text=" + encodeURIComponent(text),
      mailto: "mailto:?subject=" + encodeURIComponent(shorten(question, 100)) +
        "&body=" + encodeURIComponent(text.replace(/\n/g, "\r\n")),
    };
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
      "consensus", "notes", "c-meter", "c-pct", "c-text", "c-majority", "c-dissent", "positions", "positions-table",
      "share", "permalink", "whatsapp", "mailto", "copy", "copied", "announce"].forEach(function (r) { el[r] = role(r); });
    var t = translator(opts);
    var api = opts.api || "";
    var current = null;

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

    function headers(extra) {
      var out = Object.assign({}, extra);
      if (opts.key) out.Authorization = "Bearer " + opts.key;
      return out;
    }
    function show(e, on) { e.hidden = on === false; }
    function announce(text) { el.announce.textContent = ""; setTimeout(function () { el.announce.textContent = text; }, 50); }
    function roundLabel(i) { return i === 0 ? t("Opening answers") : t("Round {n}", { n: i }); }
    function reason(kind, name) { return t((opts.reasons || {})[kind] || opts.unknown_reason || "{name}", { name: name }); }
    function setMeter(meter, pct, score) {
      meter.value = score || 0;
      pct.textContent = score == null ? "" : Math.round(score * 100) + "%";
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
      el["c-text"].textContent = "";
      el["c-text"].setAttribute("aria-busy", "true");
      el["c-majority"].textContent = "";
      el["c-dissent"].replaceChildren();
      el["positions-table"].replaceChildren();
      el.round.textContent = "";
      [el.error, el.consensus, el.positions, el.share].forEach(function (e) { show(e, false); });
      setMeter(el.meter, el.pct, null);
    }

    function start(question, lang) {
      var st = { active: true, id: null, seq: 0, done: false, cols: new Map(), panel: [], rounds: [], synth: "" };
      reset();
      show(el.progress);
      el.state.textContent = t("Running\u2026");
      el.submit.setAttribute("aria-disabled", "true");
      run().catch(function () { showError(t("The service could not be reached. Try again."), st.id); })
        .finally(function () {
          st.active = false;
          el.submit.removeAttribute("aria-disabled");
          el.state.textContent = "";
        });
      return st;

      async function run() {
        var resp;
        try {
          resp = await fetch(api + "/v1/debates", {
            method: "POST", credentials: "omit", cache: "no-store",
            headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
            body: JSON.stringify({ question: question, language: lang }),
          });
        } catch (e) {
          showError(await unreachable());
          return;
        }
        if (!resp.ok) { showError(await refusal(resp)); return; }
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
        head.id = "cx-col-" + (st.cols.size + 1);
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
        setMeter(el.meter, el.pct, score);
        positions(st.rounds);
        if (score != null) announce(roundLabel(r.index) + " \u00b7 " + t("Agreement") + " " + Math.round(score * 100) + "%");
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
        setMeter(el["c-meter"], el["c-pct"], c.agreement);
        el["c-majority"].textContent = c.majority || "\u2014";
        var items = (c.dissent || []).map(function (d) {
          var li = h("li"), who = h("strong", null, (d.panelists || []).join(", "));
          li.append(who, ": ", h("span", null, d.final_answer));
          if (d.excerpt) li.append(" \u2014 ", h("span", null, d.excerpt));
          return li;
        });
        if (!items.length) items = [h("li", "cx-none", t("No dissent: the panel agreed."))];
        el["c-dissent"].replaceChildren.apply(el["c-dissent"], items);
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
        if (r.consensus && r.consensus.fallback) notes.push(t("The moderator model failed; the majority answer is shown instead."));
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
        var url = (opts.base || location.origin) + "/d/" + r.id;
        var links = shareLinks(t, r.question, r.consensus.answer, url);
        el.permalink.href = url;
        el.permalink.textContent = url;
        el.whatsapp.href = links.whatsapp;
        el.mailto.href = links.mailto;
        show(el.share);
        announce(t("The consensus is ready."));
      }
    }
  }

  return { mount: mount, enhanceCopy: enhanceCopy, shareLinks: shareLinks, shorten: shorten,
    partialAnswer: partialAnswer, parseBlock: parseBlock };
})();
