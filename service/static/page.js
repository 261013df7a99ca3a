/* The page's boot: mount the question box with the server's config; enhance copy-link buttons. On a permalink, the
   box is the follow-up box, shown only when this browser may continue the thread (it holds the thread's token). */
(function () {
  "use strict";
  var config = document.getElementById("cx-config");
  var cfg = config ? JSON.parse(config.textContent) : null;
  var box = document.querySelector("[data-consensus-box]");
  var followUp = document.querySelector('template[data-role="follow-up-box"]');
  if (cfg && !box && followUp && cfg.follow_up && ConsensusCore.canFollowUp(cfg.follow_up)) {
    followUp.replaceWith(followUp.content.cloneNode(true));
    box = document.querySelector("[data-consensus-box]");
  }
  if (cfg && box) {
    ConsensusCore.mount(box, {
      api: "", base: location.origin, key: cfg.key, messages: cfg.messages,
      reasons: cfg.reasons, unknown_reason: cfg.unknown_reason, thread: cfg.follow_up || null, remember: true,
    });
  }
  // The permalink page: copying needs JavaScript, so the button starts hidden.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    ConsensusCore.enhanceCopy(button, function () { return button.dataset.copy; },
      button.parentNode.querySelector(".cx-copied"), button.dataset.copied);
  });
})();
