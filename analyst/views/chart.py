"""Draw a Plotly figure with the app's own small plotly.js bundle (not Streamlit's full one).

Why: `st.plotly_chart` makes every new browser tab load and evaluate Streamlit's 4.7 MB Plotly
chunk (the full plotly.js, with 3-D, maps and WebGL). On a 2-core machine that took about 0.75 s
of a case page's first paint. Our charts only use scatter, bar, histogram and heatmap traces, all
in plotly.js's official "cartesian" bundle (1.5 MB, `charts.PLOTLY_JS` in static/). `show` mounts
a Streamlit custom component (components v2, no iframe) that loads that bundle once per tab with
a plain <script> tag (the browser caches the file and its compiled code), then draws the figure's
JSON with `Plotly.react`.

Streamlit serves static/ when `server.enableStaticServing` is on: `sleuth app` / `sleuth demo`
pass it, and .streamlit/config.toml beside app.py sets it for a plain `streamlit run app.py`.
Where it is off, or the file is missing, `show` falls back to `st.plotly_chart`: same figure,
slower first paint.
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from analyst.charts import PLOTLY_JS  # static/ beside app.py: Streamlit serves it at /app/static/

_HTML = '<div class="sleuth-plot" style="width:100%"></div>'
# One script load per tab (a promise on window), then Plotly.react into this element's div.
# Fonts and text colour come from the page, so the charts follow Streamlit's theme.
_JS = """
export default function ({ data, parentElement }) {
  const el = parentElement.querySelector(".sleuth-plot");
  window.__sleuthPlotly = window.__sleuthPlotly || {};
  if (!window.__sleuthPlotly[data.src]) {
    window.__sleuthPlotly[data.src] = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = data.src;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { delete window.__sleuthPlotly[data.src]; reject(new Error(data.src)); };
      document.head.appendChild(script);
    });
  }
  const fig = JSON.parse(data.figure);
  const height = (fig.layout && fig.layout.height) || 450;
  el.style.height = height + "px";  // the page keeps its place while plotly.js loads
  let gone = false, resize = null;
  window.__sleuthPlotly[data.src].then((Plotly) => {
    if (gone) return;
    const page = getComputedStyle(el);
    const layout = Object.assign({}, fig.layout);
    layout.font = Object.assign({ family: page.fontFamily, color: page.color }, layout.font || {});
    layout.paper_bgcolor = layout.paper_bgcolor || "rgba(0,0,0,0)";
    if (layout.title && layout.title.text && layout.title.x === undefined) {
      // as Streamlit draws titles: left and bold, clear of the mode bar on the right
      layout.title = Object.assign({}, layout.title, { x: 0, xanchor: "left", xref: "container" });
      layout.title.font = Object.assign({ weight: 600 }, layout.title.font || {});
    }
    layout.autosize = true;
    delete layout.width;
    Plotly.react(el, fig.data || [], layout, data.config);
    // follow the element's width (columns, sidebar, an expander opening), not only the window's;
    // the observer's first call (same width) must not draw the chart a second time
    let drawnWidth = el.offsetWidth;
    resize = new ResizeObserver(() => {
      const width = el.offsetWidth;
      if (!gone && width && width !== drawnWidth) { drawnWidth = width; Plotly.Plots.resize(el); }
    });
    resize.observe(el);
  }).catch((err) => {
    el.textContent = "Could not load the chart library (" + err.message + "): is static serving on?";
  });
  return () => { gone = true; if (resize) resize.disconnect(); if (window.Plotly) window.Plotly.purge(el); };
}
"""
_component = st.components.v2.component("sleuth_plotly", html=_HTML, js=_JS, isolate_styles=False)


def bundle_url() -> str | None:
    """Where the browser fetches the bundle, or None when the app does not serve it."""
    if not st.get_option("server.enableStaticServing") or not PLOTLY_JS.is_file():
        return None
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}/app/static/{PLOTLY_JS.name}" if base else f"/app/static/{PLOTLY_JS.name}"


def show(fig: go.Figure, *, key: str | None = None, config: dict | None = None) -> None:
    """Draw `fig` full width at its layout height (Plotly's zoom, pan and hover included)."""
    config = {"displaylogo": False, **(config or {})}
    src = bundle_url()
    if src is None:
        st.plotly_chart(fig, key=key, config=config)
        return
    _component(data={"figure": fig.to_json(), "src": src, "config": config}, key=key)
