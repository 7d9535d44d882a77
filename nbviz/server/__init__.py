"""nbviz's route in the Jupyter server: ``{base_url}nbviz/<session-id>/`` to a kernel's backend.

Built on jupyter-server-proxy's ``ProxyHandler`` (authentication, hop-by-hop headers, websocket
relay, Location rewriting); what it adds:

- the backend is looked up per request in the session registry (``_registry``): a Unix socket
  (0600, in a 0700 directory) or a 127.0.0.1 port that a kernel of this user registered, or a
  port on another host when that host is in ``c.NbvizRoute.host_allowlist`` (403 otherwise);
- HTTP goes to the backend over pooled keep-alive connections (aiohttp, a dependency of
  jupyter-server-proxy), and responses are streamed with back-pressure (no whole-body
  buffering, no 100 MiB cap); so are request bodies (started as soon as the head is in, no
  ``max_body_size``); small frames are not delayed (TCP_NODELAY on both legs);
- once nothing is left to parse, bytes are pumped socket to socket (``_pump``): bodies of
  1 MiB and more after their head, websockets after the backend has answered the handshake
  (no message cap, the backend's own subprotocol and pings); tornado's relay remains for HTTPS
  to the browser and for refused sessions;
- Jupyter's credentials never reach the backend: its login and XSRF cookies, the
  ``Authorization`` and ``X-XSRFToken`` headers and a ``token`` query parameter are removed
  (unless it carries the session's own secret, for a backend that asked for it as ``token``).

The parts: ``extension.py`` (what Jupyter loads: the handlers, the sweep, ``NbvizRoute``'s
settings from ``config.py``), ``relay.py`` (the route's handler: lookup, HTTP relay, tornado's
websocket relay), ``tunnel.py`` (websockets as byte tunnels), ``pool.py`` (keep-alive clients per
backend, private networks' socket broker), ``headers.py`` (what of a request reaches the
backend), ``pump.py`` (bytes between two sockets). Server side only: it reads the session
registry (``nbviz._registry``) and imports no kernel-side module.

Enabled automatically by ``etc/jupyter/jupyter_server_config.d/nbviz.json``, which names
``nbviz.serverext`` (the entry point, kept at that name).
"""
