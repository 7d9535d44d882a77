"""What runs outside the kernel for the presets, by path, standard library only.

- ``nest.py``: NestDesktop's backend process (NEST Server under gunicorn and the UI, on
  nbviz's shared supervisor, ``nbviz/_runtime/supervise.py``);
- ``bokeh_auth.py``: Bokeh's ``--auth-module`` (the session-secret gate), imported by Bokeh.

The kernel side (presets, ``App``, ``NestDesktop``) is in the folder above; it imports from
here only constants both sides agree on (``nest.SERVER_PATH``).
"""
