// nbviz frame: an iframe showing a backend through the Jupyter server, with a status bar.
// Plain ESM for anywidget; the kernel owns the state, this view renders and reports it.

/**
 * @typedef {"starting" | "ready" | "crashed" | "stopped"} Status
 * @typedef {{
 *   url: string, route: string, status: Status, message: string, error: string,
 *   height: number | string, title: string, page_title: string, path: string,
 *   started_at: number, timeout: number, frame_size: number[], serving: boolean,
 *   queue: {id?: string, state?: string, reason?: string, nodes?: string}
 * }} FrameState
 * @typedef {import("@anywidget/types").AnyModel<FrameState>} Model
 */

/** What the backend's page may do inside the cell: everything but navigate the notebook away. */
export const IFRAME_SANDBOX = [
  "allow-same-origin",
  "allow-scripts",
  "allow-forms",
  "allow-modals",
  "allow-popups",
  "allow-popups-to-escape-sandbox",
  "allow-downloads",
  "allow-pointer-lock",
].join(" ");

/** Features the backend's page may use (clipboard for desktops, fullscreen for views). */
export const IFRAME_ALLOW = "clipboard-read; clipboard-write; fullscreen";

const POLL_MS = 400;

/** The Jupyter base URL of the page we are in, or null outside Jupyter. */
function pageBaseUrl() {
  const el = document.getElementById("jupyter-config-data");
  if (!el) return null;
  try {
    const config = JSON.parse(el.textContent || "{}");
    return typeof config.baseUrl === "string" ? config.baseUrl : null;
  } catch {
    return null;
  }
}

/**
 * The absolute URL of the backend's root as this page must load it.
 * @param {Model} model
 * @returns {string | null}
 */
export function frameRoot(model) {
  const url = model.get("url");
  if (!url) return null;
  if (model.get("route") !== "relative") return url;
  const base = pageBaseUrl();
  if (base === null) return null;
  return base.replace(/\/?$/, "/") + url.replace(/^\//, "");
}

/**
 * Join the backend root and an app path ("/docs/" -> "<root>docs/").
 * @param {string} root
 * @param {string} path
 */
export function joinPath(root, path) {
  return root.replace(/\/?$/, "/") + (path || "/").replace(/^\/+/, "");
}

/**
 * A URL path as people write it: spaces and non-ASCII letters decoded ("/dir%20%C3%BC/" ->
 * "/dir ü/"); escapes of reserved characters ("%2F", "%3F", "%23") stay as they are.
 * @param {string} path
 */
function readablePath(path) {
  try {
    return decodeURI(path);
  } catch {
    return path; // not valid percent-encoding: as the browser has it
  }
}

/**
 * The app path of a location inside the frame, or null when it is outside the backend's root.
 * @param {string} root
 * @param {Location} location
 */
function appPath(root, location) {
  const rootPath = new URL(root, window.location.href).pathname.replace(/\/?$/, "/");
  const here = location.pathname + location.search + location.hash;
  if (!here.startsWith(rootPath)) {
    return location.pathname + "/" === rootPath ? "/" : null;
  }
  const path = location.pathname.slice(rootPath.length);
  return "/" + readablePath(path) + location.search + location.hash;
}

/** @param {string} tag @param {string} cls @param {string} [text] */
function el(tag, cls, text) {
  const node = document.createElement(tag);
  node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** @param {number | string} h */
function cssHeight(h) {
  return typeof h === "number" || /^\d+$/.test(String(h)) ? `${h}px` : String(h);
}

/** @type {import("@anywidget/types").Render<FrameState>} */
function render({ model, el: host }) {
  const root = el("div", "nbviz-frame");
  const bar = el("div", "nbviz-bar");
  const dot = el("span", "nbviz-dot");
  const label = el("span", "nbviz-title");
  const info = el("span", "nbviz-info");
  const buttons = el("span", "nbviz-buttons");
  /** @param {string} text @param {string} title @param {() => void} onClick */
  const button = (text, title, onClick) => {
    const b = /** @type {HTMLButtonElement} */ (el("button", "nbviz-button", text));
    b.title = title;
    b.addEventListener("click", onClick);
    buttons.appendChild(b);
    return b;
  };
  const body = el("div", "nbviz-body");
  const iframe = /** @type {HTMLIFrameElement} */ (el("iframe", "nbviz-iframe"));
  iframe.setAttribute("sandbox", IFRAME_SANDBOX);
  iframe.setAttribute("allow", IFRAME_ALLOW);
  const panel = el("div", "nbviz-panel");
  const panelTitle = el("div", "nbviz-panel-title");
  const progress = el("div", "nbviz-progress");
  const progressFill = el("div", "nbviz-progress-fill");
  progress.appendChild(progressFill);
  const panelText = el("pre", "nbviz-panel-text");
  const panelActions = el("div", "nbviz-panel-actions");
  const panelButton = /** @type {HTMLButtonElement} */ (el("button", "nbviz-button", "Restart"));
  panelButton.addEventListener("click", () => model.send({ action: "restart" }));
  panelActions.appendChild(panelButton);
  panel.append(panelTitle, progress, panelText, panelActions);
  body.append(iframe, panel);
  bar.append(dot, label, info, buttons);
  root.append(bar, body);
  host.appendChild(root);

  button("reload", "Reload the page in the frame", () => {
    try {
      iframe.contentWindow?.location.reload();
    } catch {
      iframe.src = iframe.src;
    }
  });
  button("open \u2197", "Open in a new browser tab", () => {
    const r = frameRoot(model);
    if (r) window.open(joinPath(r, model.get("path")), "_blank", "noopener");
  });
  button("restart", "Restart the backend", () => model.send({ action: "restart" }));
  button("stop", "Stop the backend", () => model.send({ action: "stop" }));

  /** @type {string | null} the root the iframe was last pointed at */
  let loadedRoot = null;

  function currentPath() {
    if (!loadedRoot) return null;
    try {
      const loc = iframe.contentWindow?.location;
      if (!loc || loc.href === "about:blank") return null;
      return appPath(loadedRoot, loc);
    } catch {
      return null; // cross-origin (direct route): the path only flows kernel -> frame
    }
  }

  function reportPath() {
    const path = currentPath();
    if (path !== null && path !== model.get("path")) {
      model.set("path", path);
      model.save_changes();
    }
    try {
      const title = iframe.contentDocument?.title ?? "";
      if (title && title !== model.get("page_title")) {
        model.set("page_title", title);
        model.save_changes();
        updateBar();
      }
    } catch {
      /* cross-origin */
    }
  }

  /** The page may load: the backend is ready, or serves its page while it starts (then the
   * frame loads it hidden, and shows it once ready). */
  function loadable() {
    const status = model.get("status");
    return status === "ready" || (status === "starting" && model.get("serving"));
  }

  /**
   * Point the frame at the backend: load its root's page once, and (``follow``) move to the
   * model's path when the kernel changed it. A status change alone does not move a page that
   * is already there (one loaded early may have rewritten its own URL meanwhile).
   * @param {boolean} follow
   */
  function navigate(follow) {
    const r = frameRoot(model);
    if (!loadable() || !r) return;
    const target = joinPath(r, model.get("path"));
    if (loadedRoot !== r) {
      loadedRoot = r;
      iframe.src = target;
      return;
    }
    if (!follow || currentPath() === model.get("path")) return;
    try {
      iframe.contentWindow?.location.replace(new URL(target, window.location.href).href);
    } catch {
      iframe.src = target;
    }
  }

  function updateBar() {
    const status = model.get("status");
    dot.dataset.status = status;
    dot.title = status;
    label.textContent = model.get("title") || model.get("page_title") || "";
    const page = model.get("page_title");
    // The query and fragment may hold a session secret or a password: never shown.
    const shown = (model.get("path") || "/").replace(/[?#].*$/, "");
    const where = page && page !== label.textContent ? `${page} \u2014 ${shown}` : shown;
    info.textContent = status === "ready" ? where : status;
  }

  /** When the backend's Slurm job was first seen waiting in the queue (ms), or 0. */
  let queuedSince = 0;

  function updateElapsed() {
    const queue = model.get("queue") || {};
    if (queue.state) {
      // A job waiting for its node: queue time does not count toward the start timeout.
      queuedSince = queuedSince || Date.now();
      const waited = (Date.now() - queuedSince) / 1000;
      progressFill.style.width = "0%";
      panelText.textContent = `${model.get("message") || "waiting in Slurm's queue"}\nin the queue for ${waited.toFixed(0)} s`;
      return;
    }
    queuedSince = 0;
    const started = model.get("started_at");
    const timeout = model.get("timeout") || 30;
    const elapsed = started ? Math.max(0, Date.now() / 1000 - started) : 0;
    progressFill.style.width = `${Math.min(100, (100 * elapsed) / timeout)}%`;
    panelText.textContent = `${model.get("message") || "starting"}\n${elapsed.toFixed(1)} s of ${timeout} s`;
  }

  /** @type {ReturnType<typeof setInterval> | undefined} */
  let ticker;

  function update() {
    const status = model.get("status");
    root.dataset.status = status;
    body.style.height = cssHeight(model.get("height"));
    updateBar();
    clearInterval(ticker);
    ticker = undefined;
    const ready = status === "ready" && frameRoot(model) !== null;
    iframe.style.visibility = ready ? "visible" : "hidden";
    panel.style.display = ready ? "none" : "flex";
    progress.style.display = status === "starting" ? "block" : "none";
    panelActions.style.display = status === "crashed" || status === "stopped" ? "block" : "none";
    if (status === "ready" && model.get("route") === "none") {
      panelTitle.textContent = "[nbviz] the backend runs, but this page cannot reach it";
      panelText.textContent =
        "The Jupyter server has no nbviz route: install nbviz where Jupyter runs and restart Jupyter.";
    } else if (status === "ready" && !ready) {
      panelTitle.textContent = "[nbviz] cannot find this page's Jupyter base URL";
      panelText.textContent =
        "Set NBVIZ_BASE_URL in the kernel's environment to the server's base URL (e.g. /user/alice/).";
    } else if (status === "starting") {
      if (!model.get("serving")) loadedRoot = null; // a page loading early stays
      const queued = Boolean((model.get("queue") || {}).state);
      panelTitle.textContent = queued
        ? `${model.get("title") || "The backend"} waits for a compute node\u2026`
        : `Starting ${model.get("title") || "backend"}\u2026`;
      updateElapsed();
      ticker = setInterval(updateElapsed, 200);
    } else if (status === "crashed") {
      panelTitle.textContent = `${model.get("title") || "The backend"} failed`;
      panelText.textContent = model.get("error");
      panelButton.textContent = "Restart";
    } else if (status === "stopped") {
      panelTitle.textContent = `${model.get("title") || "The backend"} is stopped`;
      panelText.textContent = model.get("error") || "";
      panelButton.textContent = "Start";
      loadedRoot = null;
      iframe.removeAttribute("src");
    }
    navigate(false);
  }

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let sizeTimer;
  // The frame's size goes to the kernel (a desktop can follow it), debounced.
  const resizer = new ResizeObserver(() => {
    clearTimeout(sizeTimer);
    sizeTimer = setTimeout(() => {
      const size = [Math.round(body.clientWidth), Math.round(body.clientHeight)];
      const old = model.get("frame_size") || [];
      if (size[0] > 0 && size[1] > 0 && (size[0] !== old[0] || size[1] !== old[1])) {
        model.set("frame_size", size);
        model.save_changes();
      }
    }, 250);
  });
  resizer.observe(body);

  iframe.addEventListener("load", reportPath);
  const poll = setInterval(reportPath, POLL_MS);
  const onChange = () => update();
  const onPath = () => {
    updateBar(); // the bar shows the path, whichever side changed it
    navigate(true);
  };
  const onTitle = () => updateBar();
  model.on("change:status", onChange);
  model.on("change:url", onChange);
  model.on("change:error", onChange);
  model.on("change:height", onChange);
  model.on("change:message", onChange);
  model.on("change:queue", onChange);
  model.on("change:serving", onChange);
  model.on("change:path", onPath);
  model.on("change:title", onTitle);
  update();

  return () => {
    resizer.disconnect();
    clearTimeout(sizeTimer);
    clearInterval(poll);
    clearInterval(ticker);
    model.off("change:status", onChange);
    model.off("change:url", onChange);
    model.off("change:error", onChange);
    model.off("change:height", onChange);
    model.off("change:message", onChange);
    model.off("change:serving", onChange);
    model.off("change:path", onPath);
    model.off("change:title", onTitle);
  };
}

export default { render };
