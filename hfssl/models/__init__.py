"""One folder per method; each registers itself in :data:`hfssl.METHODS` via ``hfssl/__init__.py``."""
