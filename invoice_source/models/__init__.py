"""SQL models: plain SQL files in layers (staging -> marts -> reports), run in the destination.

Each ``sql/<layer>/<name>.sql`` file is a ``select`` materialized as the table ``<name>`` in the
pipeline's dataset, through dlt's own SQL client, so the same files run on DuckDB and PostgreSQL.
Header comments declare what a model needs:

- ``-- requires: a, b``: tables (landed or modelled) that must exist; otherwise the model is
  skipped (and any stale copy dropped), so a dataset with one source still gets its models.
- ``-- union_of: a, b, c``: the model is the ``union all`` of those of them that exist.

``{{ name }}`` in a file is replaced by the fully qualified name of table ``name``;
``{{ json_text(column, key) }}`` reads a JSON key as text in the destination's dialect (the one
construct DuckDB and PostgreSQL spell differently that the models need).
Column documentation and integrity tests live in ``schema.yml`` beside the SQL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from invoice_source.money import currency_rows

logger = logging.getLogger("invoice_source.models")

SQL_DIR = Path(__file__).parent / "sql"
LAYERS = ("staging", "marts", "reports")
CURRENCIES_TABLE = "currencies"
_REF = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_JSON_TEXT = re.compile(r"\{\{\s*json_text\(\s*([\w.]+)\s*,\s*(\w+)\s*\)\s*\}\}")
_HEADER = re.compile(r"^--\s*(requires|union_of):")


@dataclass(frozen=True)
class Model:
    """One SQL model file."""

    name: str
    layer: str
    sql: str
    requires: tuple[str, ...] = ()
    union_of: tuple[str, ...] = ()
    description: str = ""


@dataclass
class ModelRun:
    """What a run of the models built and skipped."""

    built: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)


def _header_list(sql: str, key: str) -> tuple[str, ...]:
    match = re.search(rf"^--\s*{key}:\s*(.+)$", sql, re.MULTILINE)
    if not match:
        return ()
    return tuple(part.strip() for part in match.group(1).split(",") if part.strip())


@cache
def load_models() -> tuple[Model, ...]:
    """Every model, staging first, then marts (intermediate ``int_`` ones first), then reports."""
    models: list[Model] = []
    for layer in LAYERS:
        paths = sorted(
            (SQL_DIR / layer).glob("*.sql"), key=lambda p: (not p.stem.startswith("int_"), p.stem)
        )
        for path in paths:
            sql = path.read_text()
            description = " ".join(
                line[2:].strip()
                for line in sql.splitlines()
                if line.startswith("--") and not _HEADER.match(line)
            )
            models.append(
                Model(
                    name=path.stem,
                    layer=layer,
                    sql=sql,
                    requires=_header_list(sql, "requires"),
                    union_of=_header_list(sql, "union_of"),
                    description=description,
                )
            )
    return tuple(models)


@cache
def model_docs() -> dict[str, Any]:
    """``schema.yml``: per model, its description, columns and integrity tests."""
    docs: dict[str, Any] = yaml.safe_load((Path(__file__).parent / "schema.yml").read_text())
    return docs["models"]


def existing_tables(client: Any) -> set[str]:
    """Names of the tables and views in the client's dataset."""
    dataset = client.dataset_name
    rows = client.execute_sql(
        "select table_name from information_schema.tables where table_schema = %s", dataset
    )
    return {row[0] for row in rows}


def render(sql: str, client: Any) -> str:
    """Replace ``{{ name }}`` with the qualified table name and ``{{ json_text(col, key) }}``
    with the dialect's way to read a JSON object's key as text."""
    dialect = getattr(client.capabilities, "sqlglot_dialect", None)

    def json_text(match: re.Match[str]) -> str:
        column, key = match.group(1), match.group(2)
        if dialect == "duckdb":
            return f"json_extract_string({column}, '$.{key}')"
        return f"({column} ->> '{key}')"

    sql = _JSON_TEXT.sub(json_text, sql)
    return _REF.sub(lambda m: client.make_qualified_table_name(m.group(1)), sql)


def _drop(client: Any, name: str) -> None:
    client.execute_sql(f"drop table if exists {client.make_qualified_table_name(name)}")


def _create_currencies(client: Any) -> None:
    table = client.make_qualified_table_name(CURRENCIES_TABLE)
    _drop(client, CURRENCIES_TABLE)
    client.execute_sql(
        f"create table {table} (currency varchar(3) not null, exponent integer not null,"
        " minor_unit numeric(4, 3) not null)"
    )
    values = ", ".join(
        f"('{row['currency']}', {row['exponent']}, {10 ** -int(str(row['exponent'])):.3f})"
        for row in currency_rows()
    )
    client.execute_sql(f"insert into {table} values {values}")


def run_models(pipeline: Any) -> ModelRun:
    """Build every model whose inputs exist in the pipeline's dataset, in layer order."""
    result = ModelRun()
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return result
        _create_currencies(client)
        tables = existing_tables(client)
        for model in load_models():
            if model.union_of:
                parts = [name for name in model.union_of if name in tables]
                if not parts:
                    result.skipped[model.name] = list(model.union_of)
                    _drop(client, model.name)
                    continue
                select = "\nunion all\n".join(f"select * from {{{{ {name} }}}}" for name in parts)
            else:
                missing = [name for name in model.requires if name not in tables]
                if missing:
                    result.skipped[model.name] = missing
                    _drop(client, model.name)
                    tables.discard(model.name)
                    continue
                select = model.sql
            _drop(client, model.name)
            client.execute_sql(
                f"create table {client.make_qualified_table_name(model.name)} as\n"
                f"{render(select, client)}"
            )
            tables.add(model.name)
            result.built.append(model.name)
    logger.info("models: built %d, skipped %d", len(result.built), len(result.skipped))
    return result
