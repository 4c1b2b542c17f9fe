"""A new event field is one row in the field table (issue 12's "done when").

A child interpreter loads `models/contracts.py` with one extra row, the kind the detection issue
adds (`merchant_id`: an entity several users share, masked in demo mode, watched for first use),
then imports the real store, ingest, tokenizer and charts and checks that each picked it up with
no other edit: the store's DDL has the column (and adds it to a file written before it), ingest
keeps it as a column instead of folding it into `attrs`, the tokenizer grows a first-time flag,
the timeline hover shows it and demo mode masks it.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ATTRS_ROW = '    Field("attrs", "json", "extra", "other columns", in_case=False),\n'
NEW_ROW = ('    Field("merchant_id", "string", "entity", "merchant", masked=True, mask_prefix="m",\n'
           '          novelty="new_merchant", hover=True),\n')

CHILD = textwrap.dedent('''
    import importlib.util, sys
    from pathlib import Path
    import pandas as pd
    import duckdb
    import models
    source = Path("models/contracts.py").read_text()
    assert source.count(ATTRS_ROW) == 1, "the attrs row moved: update tests/test_new_field.py"
    spec = importlib.util.spec_from_loader("models.contracts", loader=None)
    contracts = importlib.util.module_from_spec(spec)
    sys.modules["models.contracts"] = contracts
    exec(compile(source.replace(ATTRS_ROW, NEW_ROW + ATTRS_ROW), "contracts.py", "exec"), contracts.__dict__)
    models.contracts = contracts

    from analyst.store import Store
    from analyst.ingest import normalise_events
    from analyst.charts import mask_identifiers, timeline_figure
    from models.tokenizer import EventTokenizer, ID_FIELDS

    assert "merchant_id" in contracts.ENTITY_COLUMNS and "merchant_id" in contracts.CASE_COLUMNS
    raw = pd.DataFrame({"user_id": ["u1", "u1", "u2"],
                        "ts": ["2024-01-01 10:00", "2024-01-01 11:00", "2024-01-01 12:00"],
                        "event_type": ["payment", "payment", "payment"],
                        "merchant_id": ["m_a", "m_a", "m_b"], "shoe_size": ["42", "42", "40"]})
    events, rejects = normalise_events(raw)
    assert len(rejects) == 0 and list(events.columns) == list(contracts.EVENT_COLUMNS)
    assert events["merchant_id"].tolist() == ["m_a", "m_a", "m_b"]
    assert "merchant_id" not in str(events["attrs"].iloc[0]) and "shoe_size" in str(events["attrs"].iloc[0])

    old = Path(sys.argv[1]) / "old.duckdb"
    with Store(old) as store:
        store.add_events(events)
    con = duckdb.connect()
    con.execute("ATTACH ? AS sleuth", [str(old)])
    con.execute("ALTER TABLE sleuth.events DROP COLUMN merchant_id")   # a file from before the field
    con.close()
    with Store(old) as store:
        store.add_events(events.iloc[[0]].assign(user_id="u3"))
        assert store.timeline("u3")["merchant_id"].tolist() == ["m_a"]
        assert store.timeline("u1")["merchant_id"].isna().all()
    fresh = Path(sys.argv[1]) / "fresh.duckdb"
    with Store(fresh) as store:
        store.add_events(events)
        timeline = store.timeline("u1")
    assert timeline["merchant_id"].tolist() == ["m_a", "m_a"]

    assert "new_merchant" in ID_FIELDS
    tokens = EventTokenizer().fit(events).transform(events)
    flag = tokens.ids[:, ID_FIELDS.index("new_merchant")].tolist()
    assert flag[0] == flag[2] != flag[1], flag      # new for u1, seen again by u1, new for u2

    masked = mask_identifiers(timeline)
    assert not masked["merchant_id"].isin(["m_a"]).any()
    figure = timeline_figure(timeline)
    assert all("merchant: m_a" in t for t in figure.data[0].text), "no hover"
    print("ok")
''')


def test_one_row_in_the_field_table_reaches_store_ingest_tokenizer_and_charts(tmp_path):
    code = f"ATTRS_ROW = {ATTRS_ROW!r}\nNEW_ROW = {NEW_ROW!r}\n" + CHILD
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
