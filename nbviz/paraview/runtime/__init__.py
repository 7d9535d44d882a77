"""What runs outside the kernel for ``ParaViewSession``: the launcher and the app in pvpython.

- ``launcher.py``: the session's backend process, started by the kernel by path (``python -S
  .../launcher.py``; see ``nbviz/_runtime/bypath.py`` for how its imports work there), standard
  library only: a private Xvfb and pvpython as children of nbviz's one supervisor
  (``nbviz/_runtime/supervise.py``);
- ``pv*.py``: inside pvpython (ParaView's own Python), run by path too: ``pvapp.py`` (the trame
  app: UI, control channel, server) and its parts, ``pvargs.py`` (its command line, ``Fail``,
  ``log``), ``pvdata.py`` (opening the data), ``pvscene.py`` and ``pvfilters.py`` (the
  pipeline and view of a session; its filters and derived fields), ``pvui.py`` (the page's
  toolbar and view), ``pvfollow.py`` (new time steps of a running solver), ``pvframes.py`` (the
  frames sent to the page, reduced then still), ``pvnumpy.py`` (VTK's numpy).

The kernel side (the folder above) imports nothing from here; it starts ``launcher.py`` by path.
"""
