"""Model page: versions and their metrics on reviewed cases; retrain in the background; compare;
promote (then rescore) or roll back."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from analyst import charts
from analyst.sampling import QueueMix, daily_seed
from analyst.service import DEFAULT_ALERT_BUDGET
from analyst.views import chart, common

JOB_KEY = "model_jobs"   # {"retrain": job_id} of this tab

wb = common.workbench()
me = common.actor()   # retrain, promote and roll back need the admin role
ADMIN_ONLY = None if me.can("admin") else f"Admins only (you are signed in as {me.role})"
jobs: dict = st.session_state.setdefault(JOB_KEY, {})

st.title("Model versions")
st.caption("Metrics are measured on the cases analysts reviewed. Retrain from the labels, compare the "
           "candidate with the current version, then promote it (cases are rescored) or roll back.")

models = None
with common.guard("Could not list the model versions"):
    models = wb.models()


SUMMARY_METRICS = ("val_stacked_auprc", "val_stacked_auroc", "n_labels", "n_users", "n_events", "seconds")


def _metric_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace the `metrics` column (a dict, or its JSON text) by a few readable numeric columns."""
    if "metrics" not in frame.columns:
        return frame
    dicts = [json.loads(m) if isinstance(m, str) else (m if isinstance(m, dict) else {}) for m in frame["metrics"]]
    flat = pd.DataFrame([{k: d.get(k) for k in SUMMARY_METRICS} for d in dicts]).dropna(axis=1, how="all")
    return pd.concat([frame.drop(columns=["metrics"]).reset_index(drop=True), flat], axis=1)


def _job(kind: str):
    job_id = jobs.get(kind)
    return wb.job(job_id) if job_id else None


def _running() -> bool:
    return any(job is not None and not job.done for job in map(_job, ("retrain",)))


@st.fragment(run_every=1.0)
def job_progress(kind: str) -> None:
    """Progress bar of this tab's running job; polls once a second, reruns the page when it ends."""
    job = _job(kind)
    if job is None or job.done:
        st.rerun(scope="app")
    st.progress(min(max(job.progress, 0.0), 1.0), text=f"{kind.capitalize()}: {job.message}")


def rescore(version: str) -> None:
    """Score every user with the now-current version and open cases, with a progress bar."""
    bar = st.progress(0.0, text=f"Rescoring with {version}...")

    def on_progress(fraction: float, message: str) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0), text=f"Rescoring with {version}: {message}")

    # the same label-collection queue as the demo and `sleuth score --mix`: high risk, uncertain
    # and a random control sample (today's draw)
    mix = QueueMix(budget=DEFAULT_ALERT_BUDGET, seed=daily_seed())
    result = wb.score(version=version, on_progress=on_progress, mix=mix, by=me)
    st.session_state["model_flash"] = (f"{version} is current: rescored {result['scored']:,} users, "
                                       f"opened {result['opened']} cases.")


def job_panel(kind: str) -> None:
    job = _job(kind)
    if job is None:
        return
    if not job.done:
        job_progress(kind)
    elif job.error:
        st.error(f"{kind.capitalize()} failed: {common.esc(job.error)}")
    else:
        st.success(f"{kind.capitalize()} finished: {job.message}", icon=":material/check_circle:")
        version = job.result.get("version")
        if version and st.session_state.get("m_compared_job") != job.job_id:
            st.session_state["m_compared_job"] = job.job_id
            st.session_state["m_cand"] = version  # compare the new version with the current one


flash = st.session_state.pop("model_flash", None)
if flash:
    st.success(flash, icon=":material/check_circle:")

if models is not None:
    current = models[models["status"] == "current"]["version"].tolist() if "status" in models else []
    current_version = current[0] if current else None
    c1, c2, c3 = st.columns([1.2, 1, 1])
    c1.metric("Current version", current_version or "none")
    c2.metric("Versions", f"{len(models):,}")
    c3.metric("Candidates", f"{int((models['status'] == 'candidate').sum()):,}" if "status" in models else "0")

    with st.container(border=True):
        a, b = st.columns([1, 3], vertical_alignment="center")
        running = _running()
        if a.button("Retrain from labels", type="primary", icon=":material/model_training:", key="m_retrain",
                    disabled=running or ADMIN_ONLY is not None, width="stretch", help=ADMIN_ONLY):
            with common.guard("Could not start the retrain"):
                jobs["retrain"] = wb.start_retrain(me).job_id
                st.rerun()  # redraw with the button disabled and the progress bar polling
        b.caption("Trains a new candidate version on all events and the latest labels, in the background: "
                  "keep working on cases meanwhile. The most recent 20% of reviewed decisions are held out "
                  "so the candidate can be compared with the current version on cases neither has seen.")
        job_panel("retrain")

    if models.empty:
        st.info("No model yet. Retrain above, or run `sleuth train`.")
    else:
        st.dataframe(_metric_columns(models), hide_index=True, width="stretch", key="m_table",
                     column_config={"created_at": st.column_config.DatetimeColumn("Created", format="YYYY-MM-DD HH:mm"),
                                    "path": None, "data_snapshot": None,
                                    "val_stacked_auprc": st.column_config.NumberColumn("Val AUPRC", format="%.3f"),
                                    "val_stacked_auroc": st.column_config.NumberColumn("Val AUROC", format="%.3f"),
                                    "n_labels": "Labels", "n_users": "Users", "n_events": "Events",
                                    "seconds": st.column_config.NumberColumn("Train s", format="%.0f")})

        st.subheader("Compare on reviewed cases")
        versions = models.sort_values("created_at", ascending=False)["version"].tolist() if "created_at" in models \
            else models["version"].tolist()
        others = [v for v in versions if v != current_version]
        l, r = st.columns(2)
        base = l.selectbox("Current", versions, index=versions.index(current_version) if current_version in versions else 0,
                           key="m_base")
        cand = r.selectbox("Compare with", [None] + others, index=1 if others else 0, key="m_cand",
                           format_func=lambda v: "(none)" if v is None else v)
        chosen = [v for v in (base, cand) if v]
        metrics: dict[str, dict] = {}
        other: dict = {}
        with common.guard("Could not compute the metrics"):
            with st.spinner("Scoring reviewed cases..."):
                # both versions on the same cases: the reviewed ones neither of them trained on
                other = {base: cand, cand: base} if cand and cand != base else {}
                metrics = {v: wb.model_metrics(v, compare_with=other.get(v)) for v in dict.fromkeys(chosen)}
        if metrics:
            first = next(iter(metrics.values()))
            st.caption(f"Measured on {first.get('n', 0):,} reviewed cases ({first.get('positives', 0):,} fraud) that "
                       f"{'neither version' if other else 'this version never'} trained on: decisions and imported "
                       "outcomes recorded after training, or held out of the retrain for this backtest.")
        pr = {v: m["pr_curve"] for v, m in metrics.items() if m.get("pr_curve")}
        cal = {v: m["calibration"] for v, m in metrics.items() if m.get("calibration")}
        if not pr and not cal and metrics:
            st.info("Not enough reviewed cases with both outcomes to draw curves yet: decide a few cases first.")
        g1, g2 = st.columns(2)
        if pr:
            with g1:
                chart.show(charts.pr_curve_figure(pr), key="m_pr")
        if cal:
            with g2:
                chart.show(charts.calibration_figure(cal), key="m_cal")
        at_k = {v: m.get("precision_at_k") for v, m in metrics.items() if m.get("precision_at_k") is not None}
        if at_k:
            rows = []
            for v, value in at_k.items():
                items = value.items() if isinstance(value, dict) else [("k", value)]
                rows.append({"version": v, **{f"precision@{k}": p for k, p in items}})
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="m_atk")

        st.subheader("Promote or roll back")
        st.caption("Promoting makes the version current and rescores every user (new cases open for the "
                   "riskiest unlabelled users); keep this tab open while the progress bar runs.")
        p1, p2, _ = st.columns([1.3, 1, 2])
        promotable = cand if cand and cand != current_version else None
        if p1.button(f"Promote {promotable or ''}".strip(), type="primary", key="m_promote", width="stretch",
                     disabled=promotable is None or ADMIN_ONLY is not None or running,
                     help=ADMIN_ONLY or "Make the compared version current, then rescore every user"):
            with common.guard("Promote failed"):
                wb.promote(promotable, me)
                rescore(promotable)
                st.rerun()
        back_to = wb.rollback_target()
        if p2.button("Roll back", key="m_rollback", width="stretch",
                     disabled=ADMIN_ONLY is not None or running or back_to is None,
                     help=ADMIN_ONLY or (f"Make {back_to} current again" if back_to else
                                         "Nothing to roll back to: no earlier version was ever current")):
            with common.guard("Roll back failed"):
                version = wb.rollback(me)
                rescore(version)
                st.rerun()
