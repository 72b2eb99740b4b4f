"""The JSON wire codec and endpoints of the T-Invest WebSocket proxy and REST gateway.

``decode(frame, stream=...)`` turns a server frame into a typed event, ``encode(request)`` a request
into a frame; ``dump``/``load`` convert single model values. For the unary methods over REST,
``encode_unary`` writes a request body, ``decode_unary`` reads an answer and ``decode_unary_error``
an error body; :data:`UNARY_TYPES` names each method's classes. See :mod:`rxinvest.wire.codec`.
"""

from rxinvest.wire.codec import (
    CACHE_LIMIT,
    UNARY_TYPES,
    UnaryTypes,
    clear_caches,
    decode,
    decode_request,
    decode_unary,
    decode_unary_error,
    decode_unary_request,
    decoder,
    dump,
    encode,
    encode_unary,
    encode_unary_error,
    json_string,
    json_value,
    load,
)
from rxinvest.wire.endpoints import (
    PROD_BASE_URL,
    PROD_REST_BASE_URL,
    SANDBOX_BASE_URL,
    SANDBOX_REST_BASE_URL,
    Dialect,
    Stream,
    Unary,
    endpoint_url,
    resolve_base_url,
    rest_base_url,
)

__all__ = [
    "CACHE_LIMIT",
    "PROD_BASE_URL",
    "PROD_REST_BASE_URL",
    "SANDBOX_BASE_URL",
    "SANDBOX_REST_BASE_URL",
    "UNARY_TYPES",
    "Dialect",
    "Stream",
    "Unary",
    "UnaryTypes",
    "clear_caches",
    "decode",
    "decode_request",
    "decode_unary",
    "decode_unary_error",
    "decode_unary_request",
    "decoder",
    "dump",
    "encode",
    "encode_unary",
    "encode_unary_error",
    "endpoint_url",
    "json_string",
    "json_value",
    "load",
    "resolve_base_url",
    "rest_base_url",
]
