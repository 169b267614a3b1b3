"""Raw files -> canonical Polars LazyFrames (see ssrf.io.schema)."""

from ssrf.io.readers import FORMATS, GenericMapping, read
from ssrf.io.schema import RawLog

__all__ = ["FORMATS", "GenericMapping", "RawLog", "read"]
