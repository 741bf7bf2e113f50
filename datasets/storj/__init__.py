"""storj: a cloud storage service's usage per user, and what its node operators earn (SPEC: the storj seed).

Projects, nodes and accounts -> operators -> users (stages.py, logic.py); snapshots of users and
operators (features.py). Its source is the per-region CSV dump (tables.py) or a database with the same
tables; generate.py writes a synthetic one, batch.py computes every feature from it independently, and
report.py draws the users.
"""
from contract.dataset import Dataset, lazy
from contract.rows import content_id

from . import features, stages
from .tables import TABLES, is_id_column, table_of_file

DATASET = Dataset(
    name="storj",
    # the source: its tables, event ids (the row's content), lower-cased id columns, per-region files
    tables=TABLES, event_id=content_id, is_id_column=is_id_column, table_of_file=table_of_file,
    # the stream: stages, their state and the topics between them
    stages=stages.STAGES, state_tables=stages.STATE_TABLES, internal_topics=stages.INTERNAL_TOPICS,
    # what Redis holds, and which stage's end marks say a run is all there
    snapshot_entities=("user", "operator"), final_stage="user",
    # a synthetic dump, and the independent batch computation verify compares with
    generate=lazy("datasets.storj.generate:generate_storj"), compute=lazy("datasets.storj.batch:compute_storj"),
    # what `fsp export` writes and `fsp report` draws
    columns=features.COLUMNS, id_kind=features.ID_KIND, report=lazy("datasets.storj.report:build"),
)
