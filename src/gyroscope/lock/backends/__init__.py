"""Lock engines. Each module is loaded only when its URL scheme is used (see ``_backend.BACKENDS``)."""
