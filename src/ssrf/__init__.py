"""ssrf: context-aware sequential recommendation (the SSRF model, its baselines, metrics and serving)."""

__version__ = "0.1.0"
