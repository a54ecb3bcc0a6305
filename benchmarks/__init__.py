"""Performance benchmark of the invoice-sync sources against their sandboxes (``make bench``).

Every measured party runs in a process of its own, so the numbers are not GIL artefacts and each
peak memory figure belongs to one party:

- :mod:`benchmarks.serve` serves one API's sandbox, seeded with N invoices, and counts requests;
- :mod:`benchmarks.reference_loop` is the plain hand-written loop (httpx paging, every line item,
  pyarrow, DuckDB inserts) the connector is compared with;
- :mod:`benchmarks.connector` runs the connector's dlt source into a fresh DuckDB file;
- :mod:`benchmarks.run` starts them, measures, and prints the figures and the goals.
"""
