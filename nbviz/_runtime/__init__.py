"""What runs outside the kernel, in another interpreter, by path: standard library only.

Nothing here imports nbviz (importing the package would load the widgets and slow every start);
the kernel runs these files as ``python -S <file> ...``.
"""
