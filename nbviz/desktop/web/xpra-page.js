// nbviz: in Xpra's HTML5 client page (index.html of nbviz's web root loads nbviz.js, which is
// the focus guard and then this).
(function () {
  "use strict";
  // Parameters may come in the URL fragment, which the browser never sends to a server (the
  // AES key goes there). Xpra's Utilities.getparam() asks location.getParameter() first.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  location.getParameter = function (key) {
    if (fragment.has(key)) return fragment.get(key);
    return query.has(key) ? query.get(key) : undefined;
  };
  // Xpra's windows cancel mousedown (preventDefault), so in an iframe a click on them does not
  // move the keyboard focus into the frame: keys typed next would go to the notebook. Take
  // the focus on every click, into Xpra's key-capturing textarea.
  document.addEventListener("mousedown", function (event) {
    const target = event.target;
    if (target && target.closest && target.closest("input, textarea, select, button")) return;
    window.focus();
    const pasteboard = document.getElementById("pasteboard");
    if (pasteboard) pasteboard.focus({preventScroll: true});
  }, true);
  // Xpra 3.1's XpraClient.do_reconnect() reads an undeclared global `win`: the ReferenceError
  // ends every reconnection attempt (after a dropped websocket the page stays dead).
  if (!("win" in window)) window.win = {minimized: false};
})();
