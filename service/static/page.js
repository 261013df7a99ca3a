/* The page's boot: mount the question box with the server's config; enhance copy-link buttons. */
(function () {
  "use strict";
  var config = document.getElementById("cx-config");
  var box = document.querySelector("[data-consensus-box]");
  if (config && box) {
    var cfg = JSON.parse(config.textContent);
    ConsensusCore.mount(box, {
      api: "", base: location.origin, key: cfg.key, messages: cfg.messages,
      reasons: cfg.reasons, unknown_reason: cfg.unknown_reason,
    });
  }
  // The permalink page: copying needs JavaScript, so the button starts hidden.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    ConsensusCore.enhanceCopy(button, function () { return button.dataset.copy; },
      button.parentNode.querySelector(".cx-copied"), button.dataset.copied);
  });
})();
