"""analyst/charts.py: figures carry the data they claim to show (colours, axes, hover, masking)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from analyst import charts


@pytest.fixture
def timeline() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 40
    return pd.DataFrame({
        "user_id": "u1",
        "ts": pd.date_range("2024-03-01", periods=n, freq="53min"),
        "event_type": rng.choice(["login", "view", "cart", "payment", "refund"], n),
        "amount": np.where(np.arange(n) % 4 == 0, 19.5, np.nan),
        "currency": "EUR",
        "ip": [f"10.0.0.{i % 3}" for i in range(n)],
        "device_id": [f"dev-{i % 2}" for i in range(n)],
        "country": "DE",
        "attribution": rng.normal(0, 0.3, n),
        "surprise": rng.gamma(2.0, 1.0, n),
        "risk": np.linspace(0.05, 0.9, n),
    })


def test_timeline_events_coloured_by_signed_attribution(timeline):
    fig = charts.timeline_figure(timeline)
    events, risk = fig.data
    assert isinstance(fig, go.Figure)
    np.testing.assert_allclose(events.marker.color, timeline["attribution"])
    bound = np.abs(timeline["attribution"]).max()
    # symmetric colour range: zero attribution is the neutral middle of the diverging scale
    assert events.marker.cmin == pytest.approx(-bound) and events.marker.cmax == pytest.approx(bound)
    assert list(events.y) == list(timeline["event_type"])
    # the biggest |attribution| gets the biggest marker
    assert int(np.argmax(events.marker.size)) == int(np.argmax(np.abs(timeline["attribution"])))
    # risk line on the second y axis, as of each event
    assert risk.yaxis == "y2" and events.yaxis == "y"
    np.testing.assert_allclose(risk.y, timeline["risk"])
    assert fig.layout.yaxis2.range == (0, 1.02)


def test_timeline_hover_has_event_details(timeline):
    fig = charts.timeline_figure(timeline)
    hover = fig.data[0].text
    assert len(hover) == len(timeline)
    first = hover[0]
    assert "#0 " + timeline.loc[0, "event_type"] in first
    assert "amount 19.50 EUR" in first and "ip: 10.0.0.0" in first and "device: dev-0" in first
    assert f"attribution: {timeline.loc[0, 'attribution']:+.3f}" in first
    assert "surprise:" in first and "risk after this event: 5.0%" in first
    assert "amount" not in hover[1]  # missing amounts are not shown as nan


def test_timeline_type_rows_follow_reading_order(timeline):
    fig = charts.timeline_figure(timeline.assign(event_type=["zeta", "login", "cart", "alpha"] * 10))
    # categoryarray is bottom-to-top, so reversed: known types first (top), unknown alphabetically
    assert list(fig.layout.yaxis.categoryarray)[::-1] == ["login", "cart", "alpha", "zeta"]


def test_timeline_without_model_columns_is_plain(timeline):
    plain = timeline[["ts", "event_type"]]
    fig = charts.timeline_figure(plain)
    assert len(fig.data) == 1  # no risk line when there is no risk
    assert fig.data[0].marker.showscale is False
    assert set(np.asarray(fig.data[0].marker.size)) == {9.0}


def test_timeline_outlines_selected_events(timeline):
    fig = charts.timeline_figure(timeline, selected=[2, 5])
    widths = list(fig.data[0].marker.line.width)
    assert widths[2] > widths[0] and widths[5] > widths[0]


def test_timeline_rejects_frames_without_required_columns():
    with pytest.raises(ValueError, match="event_type"):
        charts.timeline_figure(pd.DataFrame({"ts": pd.date_range("2024", periods=2)}))


def test_attention_heatmap_shapes():
    w = np.random.default_rng(0).random((4, 12))
    fig = charts.attention_figure(w)
    heat = fig.data[0]
    assert np.asarray(heat.z).shape == (4, 12)
    assert list(heat.y) == ["head 1", "head 2", "head 3", "head 4"]
    rollout = charts.attention_figure(w[0], row_labels=["rollout"])
    assert np.asarray(rollout.data[0].z).shape == (1, 12)
    assert "not an explanation" in fig.layout.title.text
    with pytest.raises(ValueError, match="shape"):
        charts.attention_figure(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="event_labels"):
        charts.attention_figure(w, event_labels=["a"])


def test_field_attribution_bars_sorted_and_signed():
    fig = charts.field_attribution_figure({"amount": [0.5, 0.3], "country": [-0.1, -0.05], "hour": [0.01, 0.0]})
    bars = fig.data[0]
    assert list(bars.y) == ["hour", "country", "amount"]  # largest |total| last = on top
    assert list(bars.marker.color) == ["#b2182b", "#2166ac", "#b2182b"]
    np.testing.assert_allclose(bars.x, [0.01, -0.15, 0.8])
    with pytest.raises(ValueError):
        charts.field_attribution_figure({})


def test_pr_and_calibration_curves_one_trace_per_version():
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve

    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.5, 0.7])
    precision, recall, _ = precision_recall_curve(y, p)
    fig = charts.pr_curve_figure({"v1": {"precision": precision, "recall": recall, "auprc": 0.8},
                                  "v2": {"precision": [1.0, 0.5], "recall": [0.0, 1.0]}}, base_rate=0.5)
    assert [t.name for t in fig.data] == ["v1 (AP 0.800)", "v2"]
    np.testing.assert_allclose(fig.data[0].y, precision)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=3)
    cal = charts.calibration_figure({"v1": {"prob_true": prob_true, "prob_pred": prob_pred}})
    assert cal.data[0].name == "perfect" and cal.data[1].name == "v1"
    np.testing.assert_allclose(cal.data[1].x, prob_pred)
    with pytest.raises(ValueError, match="prob_true"):
        charts.calibration_figure({"v1": {"prob_pred": [0.1]}})
    with pytest.raises(ValueError, match="values"):
        charts.pr_curve_figure({"v1": {"precision": [1.0], "recall": [0.0, 1.0]}})


def test_mask_identifiers_is_stable_and_hides_raw_values(timeline):
    masked = charts.mask_identifiers(timeline)
    assert not set(masked["ip"]) & set(timeline["ip"])
    assert not set(masked["device_id"]) & set(timeline["device_id"])
    # same raw value -> same pseudonym, different values stay different
    assert masked["ip"].nunique() == timeline["ip"].nunique()
    assert masked.loc[0, "ip"] == masked.loc[3, "ip"] and masked.loc[0, "ip"].startswith("ip#")
    assert (masked["country"] == timeline["country"]).all()  # not an identifier
    assert timeline.loc[0, "ip"] == "10.0.0.0"  # input untouched
    assert charts.mask_value(None) is None


def test_figures_serialise_to_json(timeline):
    for fig in (charts.timeline_figure(timeline), charts.risk_histogram(timeline["risk"])):
        assert fig.to_json()


def _all_figures(timeline) -> list[go.Figure]:
    curves = {"v1": {"precision": [1.0, 0.5], "recall": [0.0, 1.0], "prob_pred": [0.2, 0.8],
                     "prob_true": [0.1, 0.9]}}
    return [charts.timeline_figure(timeline), charts.loading_figure(),
            charts.attention_figure(np.full((2, len(timeline)), 0.5)),
            charts.field_attribution_figure({"amount": [0.2, -0.1], "device_id": [0.05, 0.0]}),
            charts.pr_curve_figure(curves), charts.calibration_figure(curves),
            charts.risk_histogram(timeline["risk"])]


def test_every_figure_can_be_drawn_by_the_shipped_plotly_bundle(timeline):
    """The app and the report draw with static/'s cartesian bundle: it must hold every trace type."""
    import re

    bundled = set(re.findall(r'moduleType:"trace",name:"(\w+)"', charts.PLOTLY_JS.read_text(encoding="utf-8")))
    assert {"scatter", "bar", "heatmap", "histogram"} <= bundled
    for fig in _all_figures(timeline):
        used = {trace.type or "scatter" for trace in fig.data}
        assert used <= bundled, (fig.layout.meta, used - bundled)
        layout = fig.to_plotly_json()["layout"]
        axes = [k for k in layout if re.fullmatch(r"[xy]axis\d*", k)]
        assert axes and all(layout[k].get("automargin") is True for k in axes), (fig.layout.meta, axes)


def test_shipped_plotly_bundle_is_the_documented_file_for_this_plotly():
    import hashlib
    import re

    import plotly.offline

    text = charts.PLOTLY_JS.read_text(encoding="utf-8")
    version = re.search(r"plotly\.js \(cartesian - minified\) v(\d+\.\d+\.\d+)", text[:300]).group(1)
    assert charts.PLOTLY_JS.name == f"plotly-cartesian-{version}.min.js"
    # the figures' JSON is written by the plotly package for its plotly.js: same major version
    assert version.split(".")[0] == plotly.offline.get_plotlyjs_version().split(".")[0], (
        f"plotly now writes for plotly.js {plotly.offline.get_plotlyjs_version()}: update static/ (static/README.md)")
    readme = (charts.PLOTLY_JS.parent / "README.md").read_text(encoding="utf-8")
    assert hashlib.sha256(charts.PLOTLY_JS.read_bytes()).hexdigest() in readme
