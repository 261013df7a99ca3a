/* Boot of the embeddable widget; /widget.js serves debate.js and this file in one function scope.
 *   <script src="https://HOST/widget.js" data-key="pk_..." data-question="..." data-lang="hi"></script>
 * The box lives in a shadow root: the host page's CSS cannot reach in, and ours cannot leak out.
 */
var script = document.currentScript;

function widgetLoad(shadow, api, lang, question) {
  return fetch(api + "/widget/box?lang=" + encodeURIComponent(lang || ""), { credentials: "omit" })
    .then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    })
    .then(function (box) {
      var styles = [];
      try {
        var sheet = new CSSStyleSheet();
        sheet.replaceSync(box.css);
        shadow.adoptedStyleSheets = [sheet];
      } catch (e) {
        var style = document.createElement("style");
        style.textContent = box.css;
        styles.push(style);
      }
      // Our own template from our own origin; it carries no question and no model output.
      var parsed = new DOMParser().parseFromString(box.html, "text/html");
      var root = document.adoptNode(parsed.body.querySelector("[data-consensus-box]"));
      shadow.replaceChildren.apply(shadow, styles.concat([root]));
      var field = root.querySelector('[data-role="question"]');
      // A value set by script is not held to maxlength: cut it as the service's own /ask page does, by
      // characters (code points: a UTF-16 slice could leave half an emoji, which the service refuses).
      field.value = field.maxLength > 0 ? Array.from(question).slice(0, field.maxLength).join("") : question;
      ConsensusCore.mount(root, {
        api: api, base: api, key: script.dataset.key || null, crossOrigin: true,
        messages: box.config.messages, reasons: box.config.reasons, unknown_reason: box.config.unknown_reason,
        onSwitchLanguage: function (next, text) { widgetLoad(shadow, api, next, text); },
      });
    })
    .catch(function () {
      var p = document.createElement("p");
      p.textContent = "The consensus widget could not load from " + api + ".";
      p.setAttribute("role", "alert");
      shadow.replaceChildren(p);
    });
}

if (script && script.src) {
  var api = new URL(script.src, location.href).origin;
  var host = document.createElement("consensus-debate");
  var place = function () {
    if (script.parentNode && script.parentNode !== document.head) script.insertAdjacentElement("afterend", host);
    else document.body.appendChild(host);
  };
  if (document.body || script.parentNode !== document.head) place();
  else document.addEventListener("DOMContentLoaded", place);
  var shadow = host.attachShadow({ mode: "open" });
  widgetLoad(shadow, api, script.dataset.lang || navigator.language || "", script.dataset.question || "");
}
