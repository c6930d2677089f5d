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

#: Every rule an access / error record can break, in contract order: ``reason`` is the first
#: broken, ``reasons`` lists them in this order (the Spark rules are asserted to match).
ACCESS_RULES = ("malformed_record", *(f"missing_field:{n}" for n in ACCESS_REQUIRED), "invalid_timestamp",
                "timestamp_out_of_range", "invalid_status", "invalid_method", "negative_value:bytes_sent",
                "negative_value:latency_ms", "invalid_type:bytes_sent", "invalid_type:latency_ms")
ERROR_RULES = ("malformed_record", *(f"missing_field:{n}" for n in ERROR_REQUIRED), "invalid_timestamp",
               "timestamp_out_of_range", "invalid_level")
