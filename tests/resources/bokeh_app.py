"""A tiny Bokeh server app for nbviz's preset tests: one big orange square on white."""

from bokeh.io import curdoc
from bokeh.plotting import figure

plot = figure(width=400, height=300, toolbar_location=None, title="nbviz bokeh test")
plot.background_fill_color = "white"
plot.rect(x=[0], y=[0], width=10, height=10, color="#ff6600")
plot.x_range.start, plot.x_range.end = -2, 2
plot.y_range.start, plot.y_range.end = -2, 2
curdoc().add_root(plot)
curdoc().title = "nbviz bokeh test"
