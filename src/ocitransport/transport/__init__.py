"""The registry protocol as composable round-trippers: Python counterpart of go-containerregistry's
``pkg/v1/remote/transport``.

``new(registry, auth, inner, scopes)`` pings the registry and returns a round-tripper that authenticates
(Basic or Bearer, with a shared single-flight token cache), picks the scheme and sets the user agent.
Wrap a Client in ``new_retry`` / ``new_logger`` first for retries and logging, as the remote package does.
"""

from __future__ import annotations

from .._challenges import parse_challenges
from .._values import Challenge, Diagnostic, ErrorCode
from .basic import BasicAuth
from .bearer import BearerAuth, Token, TokenCache, TokenError
from .errors import MAX_ERROR_BODY, Error, check_error
from .limit import Limit, LimitBackend, LimitPolicy, LimitStats, LocalLimits, new_limit
from .logger import Logger, new_logger
from .ping import PingError, ping, ping_async
from .retry import (
    DEFAULT_RETRY_STATUS_CODES,
    MAX_RETRY_AFTER,
    REMOTE_BACKOFF,
    Backoff,
    Retry,
    RetryBudget,
    RetryBudgetSpent,
    is_retryable,
    new_retry,
    retry_budget,
    retry_lane,
)
from .simple import Scheme, UserAgent, Wrapper, new_user_agent
from .stack import exchange, exchange_async, from_token, new, new_async

PULL_SCOPE = "pull"
PUSH_SCOPE = "push,pull"
#: Registries that enforce a delete action (IBM Cloud, distribution with delete enabled) need it.
DELETE_SCOPE = "push,pull,delete"
CATALOG_SCOPE = "catalog"

__all__ = [
    "CATALOG_SCOPE", "DEFAULT_RETRY_STATUS_CODES", "DELETE_SCOPE", "MAX_ERROR_BODY", "MAX_RETRY_AFTER", "PULL_SCOPE",
    "PUSH_SCOPE", "REMOTE_BACKOFF", "Backoff", "BasicAuth", "BearerAuth", "Challenge", "Diagnostic",
    "Error", "ErrorCode", "Limit", "LimitBackend", "LimitPolicy", "LimitStats", "LocalLimits", "Logger",
    "PingError", "Retry", "RetryBudget", "RetryBudgetSpent", "Scheme", "Token", "TokenCache", "TokenError",
    "UserAgent", "Wrapper",
    "check_error", "exchange", "exchange_async", "from_token", "is_retryable", "new", "new_async",
    "new_limit", "new_logger", "new_retry", "new_user_agent", "parse_challenges", "ping", "ping_async",
    "retry_budget", "retry_lane",
]
