"""The JSON wire codec and endpoints of the T-Invest WebSocket proxy.

``decode(frame, stream=...)`` turns a server frame into a typed event, ``encode(request)`` a request
into a frame; ``dump``/``load`` convert single model values. See :mod:`rxinvest.wire.codec`.
"""

from rxinvest.wire.codec import CACHE_LIMIT, clear_caches, decode, decode_request, decoder, dump, encode, load
from rxinvest.wire.endpoints import (
    PROD_BASE_URL,
    SANDBOX_BASE_URL,
    Dialect,
    Stream,
    endpoint_url,
    resolve_base_url,
)

__all__ = [
    "CACHE_LIMIT",
    "PROD_BASE_URL",
    "SANDBOX_BASE_URL",
    "Dialect",
    "Stream",
    "clear_caches",
    "decode",
    "decode_request",
    "decoder",
    "dump",
    "encode",
    "endpoint_url",
    "load",
    "resolve_base_url",
]
