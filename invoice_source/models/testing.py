"""Integrity tests of the models, declared in ``schema.yml``: unique keys, not-null, no fan-out."""

from __future__ import annotations

from typing import Any

from invoice_source.models import existing_tables, model_docs


def check_models(pipeline: Any) -> list[str]:
    """Run every declared test on the models that exist; return the failures (empty is good)."""
    failures: list[str] = []
    with pipeline.sql_client() as client:
        tables = existing_tables(client)
        for name, doc in model_docs().items():
            if name not in tables:
                continue
            table = client.make_qualified_table_name(name)
            tests = doc.get("tests") or {}
            unique = tests.get("unique")
            if unique:
                key = ", ".join(unique)
                # Rows beyond one per key. Not "group by <key> having count(*) > 1": DuckDB
                # 1.5 ran out of memory on that under the 96 MB limit for two text keys of
                # 5.9M line items, where this distinct count took 1.6 s.
                extra = client.execute_sql(
                    f"select count(*) - count(distinct ({key})) from {table}"
                )[0][0]
                if extra:
                    failures.append(f"{name}: {extra} rows repeat a key ({key})")
            for column in tests.get("not_null") or []:
                nulls = client.execute_sql(f"select count(*) from {table} where {column} is null")[
                    0
                ][0]
                if nulls:
                    failures.append(f"{name}: {nulls} nulls in {column}")
            other = tests.get("same_rows_as")
            if other and other in tables:
                counts = [
                    client.execute_sql(
                        f"select count(*) from {client.make_qualified_table_name(t)}"
                    )[0][0]
                    for t in (name, other)
                ]
                if counts[0] != counts[1]:
                    failures.append(f"{name}: {counts[0]} rows but {other} has {counts[1]}")
            documented = set((doc.get("columns") or {}).keys())
            if documented:
                actual = {
                    row[0]
                    for row in client.execute_sql(
                        "select column_name from information_schema.columns"
                        " where table_schema = %s and table_name = %s",
                        client.dataset_name,
                        name,
                    )
                }
                if actual != documented:
                    failures.append(
                        f"{name}: undocumented columns {sorted(actual - documented)},"
                        f" documented but missing {sorted(documented - actual)}"
                    )
    return failures
