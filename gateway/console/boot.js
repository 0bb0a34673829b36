// Starts the console: app.js and every module it imports, as one module graph. A module that does not
// arrive fails the whole graph, and the page would say "Loading the console…" for ever: a dropped
// connection, or a network change the browser noticed (Chromium aborts the requests in flight with
// ERR_NETWORK_CHANGED when an address or a route changes on the machine). So a failed start is tried
// again, a few times and a little later each time, and then the page says what happened.
(function () {
  var KEY = "steward.console.start";
  var ATTEMPTS = 5;
  var boot = document.currentScript;
  var tried = Number(sessionStorage.getItem(KEY) || 0);
  var app = document.createElement("script");
  app.type = "module";
  app.src = boot.dataset.app;
  app.onload = function () { sessionStorage.removeItem(KEY); };
  app.onerror = function () {
    var shown = document.querySelector("#app .loading");
    if (tried + 1 < ATTEMPTS) {
      sessionStorage.setItem(KEY, String(tried + 1));
      if (shown) shown.textContent = "Loading the console… (its scripts did not arrive; trying again)";
      setTimeout(function () { location.reload(); }, 300 * (tried + 1));
    } else {
      sessionStorage.removeItem(KEY);
      if (shown) shown.textContent = "The console's scripts did not arrive. Check the connection, then reload the page.";
    }
  };
  document.head.appendChild(app);
})();
