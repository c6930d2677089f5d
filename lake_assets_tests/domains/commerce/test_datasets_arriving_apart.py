"""Events and transactions arrive apart: a date may hold only one of them, for a while or for good.

`fact_user_activity` reads both facts. A date with events and no transaction has no
`fact_transactions` partition (nothing feeds it), and the other way round; the run builds what the
date holds and counts the missing side as no rows. When the other side arrives, its fact is built
and the activity of that date is rebuilt with it.
"""
import json

import pytest

D1, D2 = "2024-03-01", "2024-03-02"


@pytest.fixture
def lake(small_commerce_lake, read_parquet):
    _, storage, run = small_commerce_lake

    def activity() -> dict:
        rows = read_parquet(storage, "gold/fact/fact_user_activity").to_pylist()
        return {(r["user_id"], r["date"].isoformat()): (r["events"], r["purchases"]) for r in rows}

    return storage, run, activity


def test_a_date_with_only_events_then_its_transactions_and_a_date_with_only_transactions(lake, read_parquet):
    storage, run, activity = lake
    storage.write_text("raw/events/day1.ndjson", "\n".join(json.dumps(e) for e in [
        {"event_id": "e1", "user_id": "u1", "event_type": "login", "ts": f"{D1}T08:00:00Z"},
        {"event_id": "e2", "user_id": "u1", "event_type": "logout", "ts": f"{D1}T09:00:00Z"},
    ]) + "\n")
    run()
    # Events only: no transaction was ever delivered, so there is no fact_transactions partition at all.
    assert storage.list_files("gold/fact/fact_transactions") == []
    assert activity() == {("u1", D1): (2, 0)}

    # The day's transaction arrives, and the next day's, a day without any event.
    storage.write_text("raw/transactions/late.csv",
                       "transaction_id,user_id,amount,currency,status,created_at\n"
                       f"t1,u1,10.00,USD,completed,{D1}T10:00:00Z\n"
                       f"t2,u2,5.00,USD,completed,{D2}T12:00:00Z\n")
    assert run().touched == [D1, D2]
    assert {f.path.split("/")[3] for f in storage.list_files("gold/fact/fact_events")} == {f"event_date={D1}"}
    assert activity() == {("u1", D1): (2, 1), ("u2", D2): (0, 1)}
    revenue = read_parquet(storage, "gold/mart/daily_revenue").to_pylist()
    assert sorted((r["date"].isoformat(), r["orders"]) for r in revenue) == [(D1, 1), (D2, 1)]
