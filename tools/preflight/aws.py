"""Bounded AWS calls: every call has connect/read timeouts and retries, each check a time budget, and every way a
call can fail becomes a `Skip` with a plain reason (never a traceback).

Clients come from a factory `(service, region) -> client`, so tests hand in moto or Stubber-wrapped clients.
`Aws.calls` records every operation asked for: `policies/preflight-readonly.json` must allow exactly those.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    TokenRetrievalError,
)

# Each request: 5 s to connect, 15 s to read, at most 4 attempts (botocore standard mode: backoff on throttling and
# transient errors).
BOUNDED = Config(connect_timeout=5, read_timeout=15, retries={"mode": "standard", "total_max_attempts": 4})
CHECK_SECONDS = 60.0  # a check asks for no new call after this long
THROTTLE_RETRIES = 2  # more tries of a call still throttled after botocore's own retries
MAX_PAGES = 20

ClientFactory = Callable[[str, str], Any]

THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "EC2ThrottledException",
    "SlowDown",
}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException"}
UNIMPLEMENTED = {"InvalidAction", "NotImplemented", "UnknownOperationException", "UnsupportedOperation"}
# Errors after which no other call can succeed either: later calls are skipped at once with the same reason.
_CREDENTIALS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    TokenRetrievalError,
    ProfileNotFound,
)
POLICY_HINT = "attach policies/preflight-readonly.json"


class Skip(Exception):
    """A check that cannot run; `str()` is the reason."""


def session_factory(profile: str | None = None, config: Config = BOUNDED) -> ClientFactory:
    """Clients from boto3's standard chain and environment (AWS_PROFILE, AWS_ENDPOINT_URL, ...); `profile` is the
    stack's `aws:profile` and wins over AWS_PROFILE, as it does for the Pulumi AWS provider."""
    session: list[boto3.session.Session] = []
    clients: dict[tuple[str, str], Any] = {}

    def factory(service: str, region: str) -> Any:
        if not session:
            session.append(boto3.session.Session(profile_name=profile or None))
        if (service, region) not in clients:
            clients[service, region] = session[0].client(service, region_name=region, config=config)
        return clients[service, region]

    return factory


class Aws:
    def __init__(
        self,
        factory: ClientFactory,
        *,
        check_seconds: float = CHECK_SECONDS,
        throttle_retries: int = THROTTLE_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.factory = factory
        self.check_seconds = check_seconds
        self.throttle_retries = throttle_retries
        self.sleep = sleep
        self.clock = clock
        self.calls: list[tuple[str, str]] = []
        self._deadline: float | None = None
        self._fatal: str | None = None  # no credentials: every later call fails the same way
        self._unreachable: dict[tuple[str, str], str] = {}

    @contextmanager
    def check(self, seconds: float | None = None) -> Iterator[None]:
        """A check's time budget: calls started after it is spent are skipped."""
        outer = self._deadline
        self._deadline = self.clock() + (self.check_seconds if seconds is None else seconds)
        try:
            yield
        finally:
            self._deadline = outer

    def call(self, service: str, region: str, operation: str, **params: Any) -> dict[str, Any]:
        if self._fatal:
            raise Skip(self._fatal)
        if (service, region) in self._unreachable:
            raise Skip(self._unreachable[service, region])
        for attempt in range(self.throttle_retries + 1):
            if self._deadline is not None and self.clock() > self._deadline:
                raise Skip(f"{operation}: this check ran out of time ({self.check_seconds:g} s)")
            self.calls.append((service, operation))
            try:
                client = self.factory(service, region)
                return getattr(client, xform_name(operation))(**params)  # botocore's own method naming
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code in THROTTLING and attempt < self.throttle_retries:
                    self.sleep(min(2.0**attempt, 8.0))
                    continue
                raise Skip(client_error_reason(service, operation, error)) from None
            except NotImplementedError:  # moto, in-process, for an API it does not implement
                raise Skip(f"{operation}: not implemented by this endpoint") from None
            except _CREDENTIALS as error:
                self._fatal = f"no usable AWS credentials ({error}); set AWS_PROFILE or run `aws configure`"
                raise Skip(self._fatal) from None
            except (ConnectionError, HTTPClientError) as error:
                reason = f"cannot reach {service} in {region}: {error}"
                self._unreachable[service, region] = reason
                raise Skip(reason) from None
            except BotoCoreError as error:
                raise Skip(f"{operation}: {type(error).__name__}: {_first_line(error)}") from None
            except Exception as error:
                raise Skip(f"{operation}: unreadable answer from {service} ({type(error).__name__})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def pages(
        self, service: str, region: str, operation: str, key: str, token: str = "NextToken", **params: Any
    ) -> list[Any]:
        """Every item of `key` over at most MAX_PAGES pages; `token` names the page token (EKS: `nextToken`)."""
        items: list[Any] = []
        for _ in range(MAX_PAGES):
            page = self.call(service, region, operation, **params)
            items += page.get(key, [])
            following = page.get(token)
            if not following:
                return items
            params = {**params, token: following}
        return items


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def client_error_reason(service: str, operation: str, error: ClientError) -> str:
    details = error.response.get("Error", {})
    code, message = details.get("Code", "?"), details.get("Message", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    action = f"{'servicequotas' if service == 'service-quotas' else service}:{operation}"
    if code in DENIED:
        return f"{action} denied ({code}); {POLICY_HINT}"
    if code in THROTTLING:
        return f"{operation} still throttled after retries ({code})"
    if code in UNIMPLEMENTED or status == 501:
        return f"{operation}: not implemented by this endpoint ({code})"
    if code == "OptInRequired":
        return f"{operation}: the region is not enabled for this account (OptInRequired)"
    if isinstance(status, int) and status >= 500:
        return f"{operation}: {service} answered HTTP {status} ({code})"
    first = message.strip().splitlines()[0][:200] if message.strip() else ""
    return f"{operation} failed: {code}: {first}".rstrip(": ")
