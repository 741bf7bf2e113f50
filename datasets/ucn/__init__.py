"""ucn: a network study's per-user activity, traffic and sessions (SPEC: the ucn seed).

Devices -> users (stages.py, logic.py); snapshots of users, each with its list of closed activity
sessions (features.py). Its source is a CSV folder of one file per table (tables.py), SQLite or
PostgreSQL; generate.py writes a synthetic study, batch.py computes every feature from it independently,
and report.py draws all users or one.
"""
from contract.dataset import Dataset, lazy

from . import features, stages
from .tables import TABLES, event_id, tie_break

DATASET = Dataset(
    name="ucn",
    # the source: its tables, event ids (`table:id`), ties broken by (table, id); files named as tables
    tables=TABLES, event_id=event_id, tie_break=tie_break,
    # the stream: stages, their state and the topics between them (and the closed sessions out)
    stages=stages.STAGES, state_tables=stages.STATE_TABLES, internal_topics=stages.INTERNAL_TOPICS,
    # what Redis holds (users, and their session lists), and which stage's end marks say a run is all there
    snapshot_entities=("user",), session_lists=("user",), final_stage="user",
    # a synthetic study (CSV, SQLite or PostgreSQL), and the independent batch computation verify compares with
    generate=lazy("datasets.ucn.generate:generate_ucn"), compute=lazy("datasets.ucn.batch:compute_ucn"),
    # what `fsp export` writes (users and their sessions) and `fsp report` draws (all users, or one)
    columns=features.COLUMNS, id_kind=features.ID_KIND, report=lazy("datasets.ucn.report:build"), report_per_user=True,
)
