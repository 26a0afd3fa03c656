"""Monitoring and alerting: scrape, probe, store, query (PromQL), rules, alert routing, notify.

>>> from gyroscope.monitor import Engine, TSDB, parse_text
>>> parse_text("up 1\\n")[0][1]
1.0
"""

from gyroscope.monitor._chunks import STALE_NAN, decode_chunk, encode_chunk
from gyroscope.monitor._config import DatabaseCheck, MonitorConfig, parse_duration
from gyroscope.monitor._dbchecks import check_database
from gyroscope.monitor._dispatch import AmAlert, Dispatcher, Notification
from gyroscope.monitor._errors import NotifierError, PromQLError, RuleFileError, ScrapeError
from gyroscope.monitor._exposition import SeriesCache, format_labels, parse_text
from gyroscope.monitor._gpu import XidWatcher, gpu_status
from gyroscope.monitor._history import History
from gyroscope.monitor._notify import DeliveryQueue
from gyroscope.monitor._promql import Engine, parse_query
from gyroscope.monitor._ruleeval import ActiveAlert, GroupEvaluator, fingerprint
from gyroscope.monitor._rulefile import Rule, RuleGroup, check_rule_file, load_rule_file
from gyroscope.monitor._service import MonitorService, load_groups
from gyroscope.monitor._silences import LabelMatcher, Silence, parse_matcher, parse_weekdays
from gyroscope.monitor._slo import slo_rule_group
from gyroscope.monitor._tsdb import TSDB
from gyroscope.monitor._wiring import DEMO_RULES, build_services, demo_monitor_config

__all__ = [
    "DEMO_RULES",
    "STALE_NAN",
    "TSDB",
    "ActiveAlert",
    "AmAlert",
    "DatabaseCheck",
    "DeliveryQueue",
    "Dispatcher",
    "Engine",
    "GroupEvaluator",
    "History",
    "LabelMatcher",
    "MonitorConfig",
    "MonitorService",
    "Notification",
    "NotifierError",
    "PromQLError",
    "Rule",
    "RuleFileError",
    "RuleGroup",
    "ScrapeError",
    "SeriesCache",
    "Silence",
    "XidWatcher",
    "build_services",
    "check_database",
    "check_rule_file",
    "decode_chunk",
    "demo_monitor_config",
    "encode_chunk",
    "fingerprint",
    "format_labels",
    "gpu_status",
    "load_groups",
    "load_rule_file",
    "parse_duration",
    "parse_matcher",
    "parse_query",
    "parse_text",
    "parse_weekdays",
    "slo_rule_group",
]
