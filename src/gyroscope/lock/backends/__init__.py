"""Lock engines. Each module is loaded only when its URL scheme is used (see ``_backend.BACKENDS``)."""

# Nothing is imported here: each engine module is imported on first use of its scheme.
__all__: list[str] = []
