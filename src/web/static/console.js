// The console's only script (served from 'self'; every page works without it): counts down
// each element with data-left (seconds left when the page was read, by the server's clock),
// so a deadline counts down without trusting this machine's clock; and adds the reader's
// local time to each UTC time marked data-utc (the server does not know their time zone).
(function () {
  "use strict";
  document.querySelectorAll("[data-utc]").forEach(function (el) {
    var t = new Date(el.getAttribute("data-utc"));
    if (isNaN(t.getTime())) return;
    var local = document.createElement("span");
    local.className = "local-time";
    local.textContent = " (" + t.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) + " your time)";
    el.appendChild(local);
  });
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
