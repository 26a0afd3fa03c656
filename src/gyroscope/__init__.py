"""gyroscope keeps AI inference services steady.

One package, one command (``gyro``) and one daemon (``gyro up``): a load-balancing gateway, monitoring
and alerting, log management, distributed locks, backups, performance tests, automated deployments
and capacity planning for teams that run model servers in production.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
