"""analyst/report.py: one self-contained HTML file with the chart, explanation, decision and audit."""
from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from analyst import report
from analyst.service import CaseView
from models.explain import Explanation, WhatIf

T = 12


def _explanation(timeline: pd.DataFrame) -> Explanation:
    rng = np.random.default_rng(3)
    attr = rng.normal(0, 0.2, T)
    attr[7] = 1.5  # the event that matters
    return Explanation(
        user_id="u7", model_version="v-test", at=T - 1, risk=0.83, logit=1.6, baseline_logit=-0.2,
        delta=0.001, n_steps=24, event_attribution=attr,
        field_attribution={"event_type": attr * 0.6, "amount": attr * 0.4},
        surprise=rng.gamma(2.0, 1.0, T), risk_history=np.linspace(0.1, 0.83, T),
        attention_rollout=np.full(T, 1 / T), attention_last=np.full((2, T), 1 / T),
        what_if=(WhatIf(removed=(7,), risk=0.31),),
        reasons=("3 declined payments within 2 minutes <after> a password change.", "Account is 2 days old."),
    )


@pytest.fixture
def view() -> CaseView:
    timeline = pd.DataFrame({
        "user_id": "u7",
        "ts": pd.date_range("2024-05-01", periods=T, freq="7min"),
        "event_type": ["login", "view", "view", "cart", "payment", "payment", "password_change", "payment",
                       "payment", "refund", "view", "payment"],
        "amount": [np.nan] * 4 + [12.0, 13.0, np.nan, 99.0, 14.0, 12.0, np.nan, 15.0],
        "ip": "203.0.113.9", "device_id": "device-abc",
    })
    exp = _explanation(timeline)
    timeline = timeline.assign(risk=exp.risk_history, surprise=exp.surprise, attribution=exp.event_attribution)
    labels = pd.DataFrame({"user_id": ["u7"], "label": [1], "analyst": ["ana"], "reason": ["payment_fraud"],
                           "note": ["<script>alert('x')</script> card testing"],
                           "decided_at": [pd.Timestamp("2024-05-02 10:00")], "source": ["analyst"]})
    audit = pd.DataFrame({"at": [pd.Timestamp("2024-05-02 10:00")], "analyst": ["ana"], "action": ["decide"],
                          "user_id": ["u7"], "old": ["claimed"], "new": ["closed"]})
    return CaseView(
        user_id="u7", header={"events": T, "account_age_days": 0.1, "devices": 1, "countries": ["DE", "FR"]},
        timeline=timeline, explanation=exp, model_version="v-test", risk=0.83,
        case={"case_id": 4, "status": "closed", "assignee": "ana", "why": "high_risk"},
        labels=labels, audit=audit, neighbours=pd.DataFrame({"user_id": ["u9"], "label": [1], "similarity": [0.93]}),
        ground_truth=None,
    )


def test_report_is_one_offline_file_with_the_case(view):
    html = report.case_report_html(view, analyst="ana", generated_at=datetime(2024, 5, 3, 9, 0))
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    # plotly.js is inline: no external script or stylesheet is needed to open it
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=\"?https?:", html)
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # the library itself is embedded
    # the app's cartesian bundle (static/), once: a third of the size of the full plotly.js
    assert html.count("plotly.js (cartesian - minified) v") == 1 and len(html) < 2_500_000
    assert 'id="timeline"' in html
    for text in ("Case report: user u7", "v-test", "83.0%", "Generated 2024-05-03 09:00 UTC by ana",
                 "Account age days", "DE, FR", "payment_fraud", "Audit trail", "claimed", "u9"):
        assert text in html, text
    assert "<td>fraud</td>" in html  # labels in words, not 0/1
    assert "2024-05-02 10:00:00" in html and "10:00:00.000" not in html  # readable timestamps
    # what-if row: removing event #7 drops the risk from 83% to 31%
    assert "#7" in html and "31.0%" in html and "-52.0%" in html


def test_report_escapes_text_from_users(view):
    html = report.case_report_html(view)
    assert "<script>alert('x')</script>" not in html
    assert "&lt;script&gt;alert(" in html
    assert "&lt;after&gt;" in html  # reasons are escaped too


def test_top_events_orders_by_absolute_attribution(view):
    top = report.top_events(view.timeline, k=3)
    assert list(top["#"])[0] == 7
    assert len(top) == 3
    assert np.all(np.diff(np.abs(top["attribution"].to_numpy())) <= 0)


def test_report_masks_identifiers_in_demo_mode(view):
    html = report.case_report_html(view, masked=True)
    assert "203.0.113.9" not in html and "device-abc" not in html
    assert "ip#" in html and "dev#" in html
    assert "203.0.113.9" in report.case_report_html(view)


def test_report_without_a_model(view):
    from dataclasses import replace

    bare = replace(view, explanation=None, model_version=None, risk=None,
                   timeline=view.timeline.drop(columns=["risk", "surprise", "attribution"]),
                   labels=view.labels.iloc[0:0], audit=view.audit.iloc[0:0])
    html = report.case_report_html(bare)
    assert "No explanation" in html and "No decision recorded yet" in html and "No audit entries" in html
    assert "n/a" in html


def test_report_rejects_other_objects():
    with pytest.raises(ValueError, match="CaseView"):
        report.case_report_html(object())


def test_report_filename_is_safe():
    assert report.report_filename("u/../7 x", "v1:2") == "case-u____7_x-v1_2.html"
    assert report.report_filename("u7") == "case-u7.html"
