"""The daemon: reads gyroscope.yaml, composes the services it names, serves the platform API."""

from gyroscope.platform._config import GyroConfig, PlatformConfig, load_config, parse_config
from gyroscope.platform._daemon import Daemon, serve
from gyroscope.platform._demo import demo_config, prepare_demo_data
from gyroscope.platform._registry import SECTIONS, service_specs

__all__ = [
    "SECTIONS",
    "Daemon",
    "GyroConfig",
    "PlatformConfig",
    "demo_config",
    "load_config",
    "parse_config",
    "prepare_demo_data",
    "serve",
    "service_specs",
]
