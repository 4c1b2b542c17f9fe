"""Roles enforced in the use cases (issue 15): the settings' identity/group -> role mapping, a
call without the role refused with one clear line and nothing written, imports recorded by the
importing identity, the store migration that records it, and `sleuth app` refusing to serve
beyond loopback without sign-in. Real DuckDB files, the tiny trained home (tests/conftest.py)."""
from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from analyst.access import Actor, RoleMap, require
from analyst.cli import main
from analyst.config import Settings
from analyst.service import Workbench
from analyst.store import SCHEMA_VERSION, Store

ANALYST = Actor("ana@shop.example", "analyst", "login")
REVIEWER = Actor("rex@shop.example", "reviewer", "login")
ADMIN = Actor("ada@shop.example", "admin", "login")


# ------------------------------------------------------------------------------------ the mapping
def test_the_mapping_gives_the_highest_role_of_identity_and_groups():
    roles = RoleMap.parse("Ada@Shop.example=admin; group:fraud-leads=reviewer,\n bob=analyst")
    assert roles.signed_in("ada@shop.example").role == "admin"          # identities compared without case
    assert roles.signed_in("bob", ["Fraud-Leads"]).role == "reviewer"   # a group can raise a role
    assert roles.signed_in("ada@shop.example", ["fraud-leads"]).role == "admin"
    assert roles.signed_in("zed").role == "analyst"                     # unmapped: the default role
    assert RoleMap.parse("", "none").signed_in("zed") is None           # ... or refused
    assert roles.local("bob").role == "analyst" and roles.local("root").role == "admin"


@pytest.mark.parametrize("text, default, expected", [
    ("alice", None, "SLEUTH_ROLES entry 'alice': expected identity=role"),
    ("alice=boss", None, "role 'boss' is not one of analyst, reviewer, admin"),
    ("", "root", "SLEUTH_DEFAULT_ROLE: role 'root' is not one of"),
])
def test_a_bad_mapping_is_one_clear_line(text, default, expected):
    with pytest.raises(ValueError, match=expected):
        RoleMap.parse(text, default)
    with pytest.raises(ValueError, match=expected):
        Settings.from_env(env={"SLEUTH_ROLES": text, **({"SLEUTH_DEFAULT_ROLE": default} if default else {})})


def test_require_names_who_what_and_the_role_needed():
    require(ADMIN, "reviewer", "adjudicate")   # roles include the ones below
    with pytest.raises(PermissionError) as err:
        require(ANALYST, "admin", "promote a model")
    assert str(err.value) == ("ana@shop.example (analyst) may not promote a model: it needs the admin role; "
                              "nothing was written")


# ------------------------------------------------------------------------------------ the use cases
@pytest.fixture
def wb(home_copy):
    w = Workbench(home_copy)
    yield w
    w.close()


def _snapshot(w: Workbench) -> dict:
    return {"counts": w.counts(), "models": w.models()[["version", "status"]].values.tolist(),
            "audit": len(w.audit()), "files": sorted(p.name for p in w.settings.model_dir.iterdir())}


def test_an_analyst_is_refused_admin_work_in_the_service_and_nothing_is_written(wb, tmp_path):
    version = wb.current_version()
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"user_id": ["u1"], "label": [1]}).to_csv(labels, index=False)
    before = _snapshot(wb)
    calls = {
        "promote a model": lambda: wb.promote(version, ANALYST),
        "roll back the model": lambda: wb.rollback(ANALYST),
        "train a model": lambda: wb.train(analyst=ANALYST, progress=False),
        "retrain the model": lambda: wb.start_retrain(ANALYST),
        "import labels": lambda: wb.ingest_labels(labels, by=ANALYST),
        "ingest events": lambda: wb.ingest_events([labels], by=REVIEWER),
        "score users and open cases": lambda: wb.score(by=REVIEWER),
    }
    for action, call in calls.items():
        with pytest.raises(PermissionError, match=f"may not {action}: it needs the admin role"):
            call()
    assert wb.jobs.wait(5) and _snapshot(wb) == before


def test_reviews_need_the_reviewer_role_and_decisions_any_role(wb, monkeypatch):
    monkeypatch.setattr(wb.reviews, "share", 1.0, raising=False)
    case = wb.queue().iloc[0]
    decided = wb.decide(case["user_id"], "legit", analyst=ANALYST, reason_code="legitimate_behaviour",
                        quality="useful", note="regular shopper")
    row = wb.label_history().query("source == 'analyst'").iloc[-1]
    assert row["analyst"] == ANALYST.name   # the identity recorded is the Actor's
    before = _snapshot(wb)
    with pytest.raises(PermissionError, match="may not record a second review: it needs the reviewer role"):
        wb.second_review(decided.case_id, "fraud", reviewer=Actor("other@shop.example", "analyst", "login"),
                         reason_code="payment_fraud", note="looks scripted")
    with pytest.raises(PermissionError, match="may not adjudicate"):
        wb.adjudicate(1, "fraud", adjudicator=ANALYST, reason_code="payment_fraud", note="final")
    assert _snapshot(wb) == before


def test_a_plain_name_is_the_local_operator_unless_the_mapping_limits_it(home_copy):
    limited = Settings.from_env(env={"SLEUTH_HOME": str(home_copy.home), "SLEUTH_ROLES": "intern=analyst"})
    w = Workbench(limited)
    try:
        version = w.current_version()
        assert w.actor("ops").role == "admin"                 # CLI and scripts: the file's owner
        w.promote(version, "ops")                             # allowed (already current: a no-op promote)
        with pytest.raises(PermissionError, match=r"intern \(analyst\) may not roll back"):
            w.rollback("intern")
        with pytest.raises(PermissionError, match="no identity given"):
            w.claim(1, "  ")
    finally:
        w.close()


def test_imported_labels_are_recorded_as_imports_by_the_importer(wb, tmp_path):
    users = wb.queue()["user_id"].astype(str).tolist()[:2]
    path = tmp_path / "chargebacks.csv"
    pd.DataFrame({"user_id": users, "label": [1, 0], "source": "import"}).to_csv(path, index=False)
    stored = len(wb.label_history())
    report = wb.ingest_labels(path, by=ADMIN)
    assert report.accepted == 2
    log = wb.store.ingests()
    row = log[log["kind"] == "labels"].iloc[-1]
    assert row["imported_by"] == ADMIN.name
    imported = wb.label_history().iloc[stored:]
    assert set(imported["source"]) == {"import"} and sorted(imported["user_id"]) == sorted(users)
    audit = wb.audit()
    trail = audit[audit["action"] == "labels_imported"]
    assert trail["actor"].tolist() == [ADMIN.name] and '"rows": 2' in trail.iloc[0]["detail"]


def test_a_version_2_store_gains_the_importer_column(tmp_path):
    path = tmp_path / "v2.duckdb"
    with Store(path):
        pass
    con = duckdb.connect()
    con.execute("ATTACH ? AS sleuth", [str(path)])
    con.execute("ALTER TABLE sleuth.ingests DROP COLUMN imported_by")   # as version 2 wrote it
    con.execute("UPDATE sleuth.meta SET value = '2' WHERE key = 'schema_version'")
    con.execute("INSERT INTO sleuth.ingests VALUES (1, 'old.csv', 'abc', 'events', 3, 0, TIMESTAMP '2026-01-01')")
    con.close()
    with Store(path) as store:
        log = store.ingests()
        assert log["file"].tolist() == ["old.csv"] and log["imported_by"].isna().all()
    con = duckdb.connect()
    con.execute("ATTACH ? AS sleuth (READ_ONLY)", [str(path)])
    assert con.execute("SELECT value FROM sleuth.meta WHERE key = 'schema_version'").fetchall()[0][0] == str(
        SCHEMA_VERSION)
    con.close()


# ------------------------------------------------------------------------------------ serving
def test_sleuth_app_refuses_a_public_address_without_sign_in(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))   # no ~/.streamlit/secrets.toml either
    assert main(["app", "--address", "0.0.0.0", "--db", str(tmp_path / "s.duckdb")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--address 0.0.0.0: serving beyond this machine needs sign-in" in err
