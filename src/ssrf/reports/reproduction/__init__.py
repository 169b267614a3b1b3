"""The reproduction report: tables, verdicts and REPORT.md from finished runs' results.json; never trains.

Every number in a table comes from the runs' `results.json` (test metrics) through `mean_std` and eq. 15;
every table is written as CSV (floats at full precision) beside its markdown in REPORT.md, and every CSV row
names the runs it comes from. Reference numbers (the paper's, published, the GPU sweep) come from
`reports.reference` and are labelled as such wherever they appear.

One module per section of REPORT.md, each importing only `context` from this package (the inputs and the
shared statistics); `report.write_report` assembles the sections in order:

- `context`: `RunRow`, `DatasetInfo`, `ReportContext`; `mean_std`, `compare`, `pm`, `seed_table`, `write_csv`
- `verdicts`: the opening and "Summary"; "The paper's claims against our numbers" (`Claim`, `claims`)
- `datasets`: "Datasets (Table I)" (`table1`)
- `table2`: "Table II: AUC and RelaImpr"
- `figures`: "Figures 2 and 3" (`sweep_table`) and "Figures 4 and 5", with their PNGs
- `beauty`: "The standard benchmark: Amazon Beauty" (`beauty_table`)
- `provenance`: "Provenance" and provenance.json (`runs_table`, `config_deltas`)
- `report`: `write_report`
"""

from __future__ import annotations

from ssrf.reports.reproduction.beauty import beauty_table
from ssrf.reports.reproduction.context import (
    BASE,
    DatasetInfo,
    ReportContext,
    RunRow,
    compare,
    mean_std,
    pm,
    seed_table,
    write_csv,
)
from ssrf.reports.reproduction.datasets import table1
from ssrf.reports.reproduction.figures import sweep_table
from ssrf.reports.reproduction.provenance import CALLS, config_deltas, runs_table
from ssrf.reports.reproduction.report import write_report
from ssrf.reports.reproduction.verdicts import CLAIMED_GAIN, Claim, claims

__all__ = [
    "BASE",
    "CALLS",
    "CLAIMED_GAIN",
    "Claim",
    "DatasetInfo",
    "ReportContext",
    "RunRow",
    "beauty_table",
    "claims",
    "compare",
    "config_deltas",
    "mean_std",
    "pm",
    "runs_table",
    "seed_table",
    "sweep_table",
    "table1",
    "write_csv",
    "write_report",
]
