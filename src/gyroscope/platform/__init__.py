"""The daemon: reads gyroscope.yaml, composes the services it names, serves the platform API."""

from gyroscope.platform._config import GyroConfig, PlatformConfig, load_config, parse_config

__all__ = ["GyroConfig", "PlatformConfig", "load_config", "parse_config"]
