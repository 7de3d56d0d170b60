// The console's only script (served from 'self'; every page works without it): counts down
// each element with data-left (seconds left when the page was read, by the server's clock),
// so a deadline counts down without trusting this machine's clock.
(function () {
  "use strict";
  var els = document.querySelectorAll("[data-left]");
  if (!els.length) return;
  var start = Date.now();
  function shown(s) {
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    if (h) return h + "h " + m + "m " + x + "s";
    if (m) return m + "m " + x + "s";
    return x + "s";
  }
  function tick() {
    var gone = Math.floor((Date.now() - start) / 1000);
    els.forEach(function (el) {
      var left = parseInt(el.getAttribute("data-left"), 10) - gone;
      el.textContent = left > 0 ? shown(left) : el.getAttribute("data-done") || "passed";
    });
  }
  tick();
  setInterval(tick, 1000);
})();
