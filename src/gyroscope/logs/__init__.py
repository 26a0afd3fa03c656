"""Log management: a durable, searchable, tamper-evident log store.

>>> import tempfile; from pathlib import Path
>>> store = LogStore(Path(tempfile.mkdtemp())).open()
>>> _ = store.append([Entry(labels=canonical({"job": "api"}), line=b"GET / 200", ts_ns=1)])
>>> q = parse_query('{job="api"} |= "200"')
>>> [ln.line for ln in run_log_query(store, q, start_ns=0, end_ns=2, limit=10).lines]
['GET / 200']
>>> verify_store(store).ok
True
>>> store.close()
"""

from gyroscope.logs._checkpoint import Checkpoint, CheckpointLog
from gyroscope.logs._commit import GroupCommitter
from gyroscope.logs._config import LogsConfig, RetentionConfig, StreamRetention, build_services
from gyroscope.logs._errors import (
    BadInputError,
    CorruptRecordError,
    LogStoreError,
    ProofError,
    QuerySyntaxError,
    StoreLockedError,
)
from gyroscope.logs._handler import LogServerHandler
from gyroscope.logs._ingest import parse_json_lines, parse_loki_push, parse_syslog
from gyroscope.logs._labels import canonical, parse_labels
from gyroscope.logs._logql import parse_query, parse_selector
from gyroscope.logs._maintain import apply_retention, redact
from gyroscope.logs._proofs import consistency_proof, inclusion_proof, verify_proof
from gyroscope.logs._query import run_log_query, run_metric_query
from gyroscope.logs._record import Record
from gyroscope.logs._retention import RetentionRule, plan_retention
from gyroscope.logs._scrub import Problem, VerifyReport, verify_store
from gyroscope.logs._service import LogServer
from gyroscope.logs._ship import Shipper
from gyroscope.logs._store import AppendResult, Entry, LogStore

__all__ = [
    "AppendResult",
    "BadInputError",
    "Checkpoint",
    "CheckpointLog",
    "CorruptRecordError",
    "Entry",
    "GroupCommitter",
    "LogServer",
    "LogServerHandler",
    "LogStore",
    "LogStoreError",
    "LogsConfig",
    "Problem",
    "ProofError",
    "QuerySyntaxError",
    "Record",
    "RetentionConfig",
    "RetentionRule",
    "Shipper",
    "StoreLockedError",
    "StreamRetention",
    "VerifyReport",
    "apply_retention",
    "build_services",
    "canonical",
    "consistency_proof",
    "inclusion_proof",
    "parse_json_lines",
    "parse_labels",
    "parse_loki_push",
    "parse_query",
    "parse_selector",
    "parse_syslog",
    "plan_retention",
    "redact",
    "run_log_query",
    "run_metric_query",
    "verify_proof",
    "verify_store",
]
