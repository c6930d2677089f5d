"""The logs contract's field lists and allowed values, as plain data.

No Spark import: the contract's Spark rules, the generator's checks and the
benchmark's baselines all read the same lists.
"""

ACCESS_FIELDS = ("timestamp", "service", "request_id", "method", "path", "status", "host",
                 "client_ip", "user_id", "user_agent", "bytes_sent", "latency_ms")
ACCESS_REQUIRED = ("timestamp", "service", "request_id", "method", "path", "status")
ERROR_FIELDS = ("timestamp", "service", "level", "message", "host", "code", "request_id")
ERROR_REQUIRED = ("timestamp", "service", "level", "message")
#: Required fields that may be empty strings (the contract's one exception).
MAY_BE_EMPTY = frozenset({"message"})

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
LEVELS = ("WARN", "ERROR", "CRITICAL")
