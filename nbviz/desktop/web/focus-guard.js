// nbviz: in both desktop clients' pages, first. In nbviz's frame in a notebook, the page takes
// the keyboard focus only when the user asks for it (a click or a key in it) or already has it.
// Xpra's page focuses its key-capturing textarea whenever it connects, and noVNC its canvas:
// that took the keyboard from the cell being typed in (the page loads, hidden, while the
// desktop starts). In a tab of its own (a launcher tile's, "open in a new tab") the page keeps
// its ways.
(function () {
  "use strict";
  var frame = null;
  try {
    frame = window.frameElement;
  } catch (e) {}  // a page of another origin around it
  if (!frame || !frame.classList.contains("nbviz-iframe")) return;
  var focus = HTMLElement.prototype.focus;
  var asked = false;
  function ask() {
    asked = true;
    setTimeout(function () { asked = false; }, 0);
  }
  ["pointerdown", "mousedown", "touchstart", "keydown"].forEach(function (type) {
    window.addEventListener(type, ask, true);
  });
  HTMLElement.prototype.focus = function () {
    if (asked || document.hasFocus()) return focus.apply(this, arguments);
  };
})();
