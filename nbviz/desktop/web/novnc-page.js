// nbviz: in noVNC's page (nbviz.html, a copy of vnc.html), after the focus guard: it adds the
// websocket path under the route to the parameters (computed from the page's own location, so
// it works behind any prefix) before noVNC's modules read them. The password comes in the
// fragment, which browsers never send to a server (so it is in no log).
(function () {
  const here = location.pathname.replace(/[^/]*$/, "");
  const hash = location.hash ? location.hash.slice(1) + "&" : "";
  const path = "path=" + encodeURIComponent(here.slice(1) + "websockify");
  history.replaceState(null, "", "#" + hash + path);
})();
