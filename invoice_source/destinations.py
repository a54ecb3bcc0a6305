"""The DuckDB destination invoice-sync loads into: dlt's own, with memory settings and a merge
whose deduplication can spill to disk and whose deletes are hash joins.

dlt merges a table by deduplicating its staging rows with ``ROW_NUMBER() OVER (PARTITION BY
<primary key>)`` and inserting the first of each key. DuckDB's window operator holds every
column of every staged row in memory and cannot spill, so a first load of 100k Stripe invoices
needed over 1 GB for the merge alone and failed under any ``memory_limit`` below that. The
merge here keeps dlt's statements but drops duplicates by aggregate: ``rowid NOT IN`` the rows
of keys staged more than once other than each key's ``min(rowid)``. The aggregate touches only
the key columns and DuckDB's hash aggregate spills under its ``memory_limit``; what the insert
then holds beside the rows it writes is the duplicates alone (usually none), where ``rowid IN
(SELECT min(rowid) ... GROUP BY <primary key>)`` held a row id per staged key and ran out of
memory inserting a million Stripe invoices under 96 MB. The result is the same: one row per
key, an arbitrary one of its duplicates (dlt's ``ROW_NUMBER()`` is ordered by nothing either),
exact copies included (a copy job re-run after a crash stages its file twice). Tables with a
``dedup_sort`` hint, or with a column named ``rowid`` (it hides DuckDB's), keep dlt's
deduplication; so do pipelines restored without this destination object (``dlt.attach``, the
``dlt pipeline ... load`` command), which get dlt's stock DuckDB destination.

A child table merged with ``delete-insert`` on ``merge_key="invoice_id"`` and a primary key that
starts with ``invoice_id`` gets dlt's delete condition ``(invoice_id AND id match) OR invoice_id
matches``. DuckDB cannot turn an ``OR`` into a hash join, so every run scanned every landed line
against every staged one (0.4 s at 100k invoices, 1.1 s at 300k, for an incremental run with
nothing new). When the merge key is part of the primary key the first half implies the second,
so the delete here matches on the merge key alone: the same rows, by hash join.

dlt opens the DuckDB file for every load job and closes it after (each close checkpoints): a
Stripe load is ten jobs or more, and on a 1.2 GB file (1M invoices) each open and close took
~0.1 s, 1.4 s of an incremental run's 2.1 s load step. Here a small package (under
``SHARED_CONNECTION_MAX_BYTES``, ~1,000 Stripe invoices: a scheduled run's) opens the file at its
first job and keeps it open, shared by its jobs, until it completes: one open per load, and a
checkpoint after each job (an append to a table that has rows holds a 256 KiB block per column
until one: four Stripe tables and their staging copies came to ~84 MB). A larger package keeps
dlt's open and close per job, because an open file keeps in memory what every job wrote until
it closes (20k invoices ran out of memory that way).
A job that fails, for good or to be retried, ends the sharing: the file closes once that job's
connection is returned, and the rest of the package (its retries included) opens it per job, so
a load that gives up leaves the file closed and a retry starts from DuckDB's memory freed.

Every close (and DuckDB's checkpoint at commit) also *vacuums*: it rewrites partly filled row
groups into full ones, in every table that has some, staging tables included. A load job appends
a file of up to 250,000 rows, which ends in a partly filled row group of 122,880, so each job
after a table's first rewrote that table's tail: ~1.2 s per job for Stripe line items (of 1.3 s
for the copy itself), to tidy staging rows the merge reads once and the next load deletes. The
load's connections here run with DuckDB's vacuum off (``max_vacuum_tasks = 0``); once a package
is recorded as loaded its staging tables are emptied and one checkpoint with the vacuum back on
compacts what this load changed in the dataset's tables (an incremental run's small append and
its deletes), as every close did before. A ``max_vacuum_tasks`` set in dlt config wins.

DuckDB runs in the loading process, so the load step starts by returning the memory the extract
freed (dlt's writers and the last tables are freed after the source's own release, and glibc
keeps the pages): at 300k Stripe invoices the process entered the load with 116 MB of anonymous
memory and 84 MB after, and a 1M load had entered it with 50 MB more in one run than another.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import dlt
from dlt.common.destination.client import LoadJob, PreparedTableSchema
from dlt.destinations.exceptions import DatabaseException
from dlt.destinations.impl.duckdb.configuration import DuckDbConnectionPool, DuckDbCredentials
from dlt.destinations.impl.duckdb.duck import DuckDbClient
from dlt.destinations.impl.duckdb.factory import duckdb as DuckDbDestination
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient
from dlt.destinations.sql_client import SqlClientBase
from dlt.destinations.sql_jobs import SqlMergeFollowupJob

from invoice_source.memory import release_free_memory

logger = logging.getLogger("invoice_source.destinations")

# DuckDB's own defaults are a thread per core, insertion order kept and 80 % of RAM, which it
# fills with cached blocks before it evicts any: a 100k-invoice load held 1.2-2.0 GB. One thread
# without insertion order and a memory limit keep the load step flat in N: with the spillable
# merge below nothing needs more than the limit (the rest goes to ``<file>.tmp`` beside the
# database). DuckDB's process holds ~50-80 MB beyond the limit; 96 MB loads as fast as 128 MB
# (a 100k-invoice Stripe load peaked at 360 MB instead of 423 MB), 64 MB is too little to
# append the widest Stripe table. Any key set in dlt config under [destination.duckdb.credentials]
# global_config wins over these (the SQL models and notebooks' queries run under them too).
DUCKDB_SETTINGS: dict[str, Any] = {
    "threads": 1,
    "preserve_insertion_order": False,
    "memory_limit": "96MB",
}


def duckdb_destination(path: str) -> Any:
    """The DuckDB file ``path`` as a dlt destination, with :data:`DUCKDB_SETTINGS` under
    whatever ``destination.duckdb.credentials.global_config`` sets in dlt config."""
    configured = dlt.config.get("destination.duckdb.credentials.global_config", dict) or {}
    return InvoiceSyncDuckDb(
        DuckDbCredentials(path, global_config={**DUCKDB_SETTINGS, **configured})
    )


# The row id kept of a key staged more than once, in the deduplication's subquery.
_KEPT = "invoice_sync_kept_rowid"


class MergeKeyDeleteJob(SqlMergeFollowupJob):
    """dlt's merge statements, deleting by the merge key alone when it is part of the primary
    key (see the module's text)."""

    @classmethod
    def _gen_key_table_clauses(
        cls, primary_keys: Sequence[str], merge_keys: Sequence[str]
    ) -> list[str]:
        if primary_keys and merge_keys and set(merge_keys) <= set(primary_keys):
            primary_keys = []  # a primary key match implies a merge key match
        return list(super()._gen_key_table_clauses(primary_keys, merge_keys))


class DuckDbMergeJob(MergeKeyDeleteJob):
    """:class:`MergeKeyDeleteJob` with a deduplication DuckDB can spill. A table with a column
    named ``rowid`` (which hides DuckDB's own) and a ``dedup_sort`` hint keep dlt's
    ``ROW_NUMBER()`` deduplication."""

    @classmethod
    def generate_sql(
        cls, table_chain: Sequence[PreparedTableSchema], sql_client: SqlClientBase[Any]
    ) -> list[str]:
        """The merge statements for ``table_chain``."""
        if any(name.lower() == "rowid" for table in table_chain for name in table["columns"]):
            return list(MergeKeyDeleteJob.generate_sql(table_chain, sql_client))
        return list(super().generate_sql(table_chain, sql_client))

    @classmethod
    def gen_select_from_dedup_sql(
        cls,
        table_name: str,
        primary_keys: Sequence[str],
        columns: Sequence[str],
        dedup_sort: Any = None,
        condition: Any = None,
        condition_columns: Any = None,
        skip_dedup: bool = False,
    ) -> str:
        """``SELECT columns FROM table_name`` keeping one row per primary key: every row but
        those of a key staged more than once other than its first ``rowid``."""
        if skip_dedup or dedup_sort is not None:
            return str(
                super().gen_select_from_dedup_sql(
                    table_name,
                    primary_keys,
                    columns,
                    dedup_sort,
                    condition,
                    condition_columns,
                    skip_dedup,
                )
            )
        keys = ", ".join(primary_keys)
        same_key = " AND ".join(f"s.{key} IS NOT DISTINCT FROM d.{key}" for key in primary_keys)
        duplicates = (
            f"SELECT s.rowid FROM {table_name} AS s JOIN (SELECT {keys}, min(rowid) AS {_KEPT}"
            f" FROM {table_name} GROUP BY {keys} HAVING count(*) > 1) AS d"
            f" ON {same_key} AND s.rowid <> d.{_KEPT}"
        )
        return (
            f"SELECT {', '.join(columns)} FROM {table_name}"
            f" WHERE rowid NOT IN ({duplicates}) AND ({condition or '1 = 1'})"
        )


# A package whose job files sum to less than this loads through one open file; a larger one
# opens the file per job, as dlt does. An open file keeps what each job wrote in DuckDB's memory
# (its in-memory table data and allocator, read off ``duckdb_memory()``) until it closes; the
# checkpoint after each job (``_checkpoint_shared_file``) frees the blocks a small append takes,
# but for large jobs, measured before it, a CHECKPOINT did not free that: 20k Stripe invoices
# (an 18.5 MB package) reached the 96 MB limit at the third merge and ran out of memory, 10k
# (9 MB) passed at a 120 MB larger load step. Closed after each job, DuckDB gives that memory
# back, and an open costs ~0.1 s against jobs of seconds. 1 MiB is ~1,000 Stripe invoices: a
# scheduled run's package, not a backfill's.
SHARED_CONNECTION_MAX_BYTES = 2**20


def _package_bytes(job_path: str) -> int:
    """Bytes of the job files of the package that ``job_path`` (one of its jobs) belongs to."""
    package = Path(job_path).parent.parent
    return sum(
        job.stat().st_size
        for folder in ("new_jobs", "started_jobs")
        for job in (package / folder).glob("*")
        if job.is_file()
    )


# The connection each pool keeps borrowed while a package loads (see the module's text); None
# once the package opens the file per job (a large package, or a job failed). Keyed weakly: dlt
# gives each load step a pool of its own, and a load that stopped without a job failing (a
# signal, an error outside the jobs) leaves its entry to go with its pool, closing the file.
_PACKAGE_CONNECTIONS: weakref.WeakKeyDictionary[DuckDbConnectionPool, Any] = (
    weakref.WeakKeyDictionary()
)


# DuckDB's setting for the row group rewrites a checkpoint may do (see the module's text).
VACUUM_SETTING = "max_vacuum_tasks"


class DuckDbMergeClient(DuckDbClient):
    """dlt's DuckDB job client, merging with :class:`DuckDbMergeJob`, keeping the file open from
    a small package's first job until the package completes, and loading with DuckDB's vacuum
    off until the package is recorded."""

    def initialize_storage(self, truncate_tables: Iterable[str] | None = None) -> None:
        """dlt's preparation of the dataset (at the start of each load), after giving the
        memory the extract freed back to the system (see :func:`release_free_memory`)."""
        release_free_memory()
        super().initialize_storage(truncate_tables or ())

    def __enter__(self) -> DuckDbMergeClient:
        super().__enter__()
        if self._controls_vacuum():
            self.sql_client.execute_sql(f"SET GLOBAL {VACUUM_SETTING} = 0")
        return self

    def _controls_vacuum(self) -> bool:
        return VACUUM_SETTING not in (self.config.credentials.global_config or {})

    def _create_merge_followup_jobs(self, table_chain: Sequence[Any]) -> list[Any]:
        return [DuckDbMergeJob.from_table_chain(table_chain, self.sql_client)]

    def create_load_job(
        self, table: PreparedTableSchema, file_path: str, load_id: str, restore: bool = False
    ) -> LoadJob:
        """dlt's load job for ``file_path``; the package's first one opens the file for all."""
        pool = self.config.credentials.conn_pool
        if pool is not None and pool not in _PACKAGE_CONNECTIONS:
            connection = None  # a large package: a connection per job, as dlt does
            if _package_bytes(file_path) < SHARED_CONNECTION_MAX_BYTES:
                session = DuckDbSqlClient(
                    self.sql_client.dataset_name,
                    self.sql_client.staging_dataset_name,
                    self.config.credentials,
                    self.capabilities,
                )
                # a borrow: while it is out, every job's connection is a clone of the open one
                connection = session.open_connection()
            _PACKAGE_CONNECTIONS[pool] = connection
        return super().create_load_job(table, file_path, load_id, restore)

    def complete_load(self, load_id: str) -> None:
        """Record the package as loaded, then let the file close with this client."""
        try:
            super().complete_load(load_id)
            self._empty_staging_and_compact(load_id)
        finally:
            self._return_package_connection()

    def _empty_staging_and_compact(self, load_id: str) -> None:
        """Delete every staging row (the merges have read them) and checkpoint with DuckDB's
        vacuum on. The load is recorded already: a failure here is logged, and the next load
        (or any later checkpoint) does the same work. dlt's ``truncate_staging_dataset`` would
        empty them only after this, so the checkpoint would vacuum the staged rows first."""
        client = self.sql_client
        try:
            staged = client.execute_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                " AND table_catalog = current_database() AND table_type = 'BASE TABLE'",
                client.staging_dataset_name,
            )
            staging = client.fully_qualified_dataset_name(staging=True)
            for (table_name,) in staged or []:
                client.execute_sql(f"DELETE FROM {staging}.{client.escape_column_name(table_name)}")
            if self._controls_vacuum():
                client.execute_sql(f"RESET GLOBAL {VACUUM_SETTING}")
            client.execute_sql("CHECKPOINT")
        except DatabaseException as error:
            logger.warning(
                "DuckDB: load %s is complete, but emptying its staging tables and compacting"
                " the file failed (%s); the next load does it",
                load_id,
                error,
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        # dlt runs each job inside ``with job_client``: a job that failed ends the sharing
        if exc_type is not None:
            self._stop_sharing()
        elif self._sharing_file():
            self._checkpoint_shared_file()
        super().__exit__(exc_type, exc_val, exc_tb)  # type: ignore[arg-type]

    def _sharing_file(self) -> bool:
        pool = self.config.credentials.conn_pool
        return pool is not None and _PACKAGE_CONNECTIONS.get(pool) is not None

    def _checkpoint_shared_file(self) -> None:
        """Write what the job appended to the open file, so DuckDB frees it.

        Appending to a table that has rows takes a 256 KiB in-memory block per column, until a
        checkpoint writes it out: a package touching the four Stripe tables and their staging
        copies (~290 columns) held ~84 MB under the 96 MB limit, and its closing checkpoint
        failed with a FATAL error, which invalidates the open database. Checkpointed after each
        job, the most held at once is one table's.
        """
        try:
            self.sql_client.execute_sql("CHECKPOINT")
        except DatabaseException as error:  # the package's closing checkpoint tries again
            logger.debug("DuckDB: checkpoint after a job failed: %s", error)

    def _stop_sharing(self) -> None:
        """Return the package's open connection and let its remaining jobs open their own."""
        pool = self.config.credentials.conn_pool
        if pool is not None and (connection := _PACKAGE_CONNECTIONS.get(pool)) is not None:
            _PACKAGE_CONNECTIONS[pool] = None
            pool.return_conn(connection)

    def _return_package_connection(self) -> None:
        pool = self.config.credentials.conn_pool
        if pool is not None and (connection := _PACKAGE_CONNECTIONS.pop(pool, None)):
            pool.return_conn(connection)


class InvoiceSyncDuckDb(DuckDbDestination):
    """dlt's ``duckdb`` destination with :class:`DuckDbMergeClient`.

    It reports dlt's own destination type, so pipelines, their state and ``dlt`` commands see
    the plain ``duckdb`` destination they know.
    """

    @property
    def client_class(self) -> type[DuckDbClient]:
        return DuckDbMergeClient

    @property
    def destination_type(self) -> str:
        return "dlt.destinations.duckdb"
