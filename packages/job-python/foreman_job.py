"""The job side of foreman's job API, for jobs written in Python: standard library only, Python >= 3.9.

    from foreman_job import get_job, progress, complete, fail

    job = get_job()                   # {"id": ..., "body": ...}
    progress(0.5, {"step": 1})        # x-foreman-job-status: running, x-foreman-job-progress: 0.5
    complete({"result": 42})          # final: the job's result
    fail({"error": "disk full"})      # a last update with the details, then exit 1: the agent reports "failed"

Every call retries connection errors and 503 for ``retry_for`` seconds (two minutes by default): while the agent
restarts its job API does not answer, and the same request succeeds once it is back. 409 (the job has ended) raises
JobEndedError: stop. Other errors raise JobApiError. docs/openapi/job-api.yaml is the contract.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, NoReturn, Optional, Tuple, Union

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_RETRY_FOR",
    "GET_ENDPOINT_ENV",
    "PROGRESS_HEADER",
    "PUT_ENDPOINT_ENV",
    "STATUS_HEADER",
    "JobApiError",
    "JobClient",
    "JobEndedError",
    "RetryInfo",
    "complete",
    "fail",
    "get_job",
    "progress",
]

__version__ = "0.1.0"

STATUS_HEADER = "x-foreman-job-status"
PROGRESS_HEADER = "x-foreman-job-progress"
GET_ENDPOINT_ENV = "FOREMAN_GET_JOB_ENDPOINT"
PUT_ENDPOINT_ENV = "FOREMAN_PUT_JOB_ENDPOINT"
#: How long a call retries connection errors and 503 in all, by default (seconds): an agent restart's window.
DEFAULT_RETRY_FOR = 120.0
#: How long one attempt may take before it counts as a connection error (seconds).
DEFAULT_ATTEMPT_TIMEOUT = 30.0

Body = Union[bytes, str, int, float, bool, None, list, dict]


class JobApiError(Exception):
    """The job API answered with an error the job cannot retry (400, 404, 413, ...), or kept failing."""

    def __init__(self, message: str, status: int, body: Any = None) -> None:
        super().__init__(message)
        #: The HTTP status; 0 when no answer came.
        self.status = status
        self.body = body


class JobEndedError(JobApiError):
    """409: the job has already ended (completed, canceled, timed out or failed). Stop working."""

    def __init__(self, message: str, body: Any = None) -> None:
        super().__init__(message, 409, body)


class RetryInfo:
    """What ``on_retry`` is told before each retry."""

    __slots__ = ("attempt", "delay", "reason")

    def __init__(self, attempt: int, delay: float, reason: str) -> None:
        self.attempt = attempt  #: 1 for the first retry
        self.delay = delay  #: seconds before the next attempt
        self.reason = reason  #: why the last attempt failed: "ConnectionRefusedError", "timeout", "503", ...

    def __repr__(self) -> str:
        return f"RetryInfo(attempt={self.attempt}, delay={self.delay:.2f}, reason={self.reason!r})"


def _encode(body: Body) -> Tuple[Optional[bytes], Optional[str]]:
    """A body as bytes and its content type: bytes and strings as they are, anything else as JSON."""
    if body is None:
        return None, None
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body).encode("utf-8"), "application/json"


def _redact(url: str) -> str:
    """The URL without its secret, for messages."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.urlencode([(k, "***" if k == "token" else v) for k, v in urllib.parse.parse_qsl(parts.query)], safe="*")
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _parse(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:
        return data.decode("utf-8", "replace")


class JobClient:
    """A client of one job's API.

    ``get_endpoint`` and ``put_endpoint`` default to the environment's FOREMAN_GET_JOB_ENDPOINT and
    FOREMAN_PUT_JOB_ENDPOINT; ``retry_for`` (seconds, default 120) is how long a call retries connection errors and
    503 in all; ``attempt_timeout`` (seconds, default 30) how long one attempt may take; ``on_retry`` is told before
    each retry.
    """

    def __init__(
        self,
        get_endpoint: Optional[str] = None,
        put_endpoint: Optional[str] = None,
        retry_for: float = DEFAULT_RETRY_FOR,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        on_retry: Optional[Callable[[RetryInfo], None]] = None,
    ) -> None:
        self._get_endpoint = get_endpoint
        self._put_endpoint = put_endpoint
        self.retry_for = retry_for
        self.attempt_timeout = attempt_timeout
        self.on_retry = on_retry
        # No proxy from the environment: the job API is on the job's own network.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @staticmethod
    def _endpoint(given: Optional[str], name: str) -> str:
        url = given or os.environ.get(name)
        if not url:
            raise JobApiError(f"{name} is not set: is this running in a foreman job container?", 0)
        return url

    def _call(self, method: str, url: str, headers: Dict[str, str], data: Optional[bytes]) -> Any:
        """One request, retried on connection errors and 503 until ``retry_for`` has passed; the parsed answer."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with self._opener.open(request, timeout=self.attempt_timeout) as response:
                    return _parse(response.read())
            except urllib.error.HTTPError as err:
                body = _parse(err.read())
                detail = f" {body['error']}" if isinstance(body, dict) and "error" in body else ""
                message = f"{method} {_redact(url)}: {err.code}{detail}"
                if err.code == 409:
                    raise JobEndedError(message, body) from None
                if err.code != 503:
                    raise JobApiError(message, err.code, body) from None
                reason = "503"
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
                cause = err.reason if isinstance(err, urllib.error.URLError) else err
                reason = "timeout" if isinstance(cause, (socket.timeout, TimeoutError)) else type(cause).__name__
            elapsed = time.monotonic() - started
            if elapsed >= self.retry_for:
                raise JobApiError(f"{method} {_redact(url)} failed for {self.retry_for:g} s: {reason}", 503 if reason == "503" else 0)
            # Capped exponential backoff with jitter, never past the deadline.
            cap = min(2.0, 0.1 * 2**attempt)
            delay = min(cap / 2 + random.random() * cap / 2, self.retry_for - elapsed)
            if self.on_retry is not None:
                self.on_retry(RetryInfo(attempt, delay, reason))
            time.sleep(delay)

    def _put(self, status: str, fraction: Optional[float], body: Body) -> None:
        data, content_type = _encode(body)
        headers = {STATUS_HEADER: status}
        if fraction is not None:
            headers[PROGRESS_HEADER] = repr(float(fraction))
        if content_type is not None:
            headers["content-type"] = content_type
        self._call("PUT", self._endpoint(self._put_endpoint, PUT_ENDPOINT_ENV), headers, data)

    def get_job(self) -> Dict[str, Any]:
        """The job: ``{"id": ..., "body": ...}``. Marks it running."""
        job = self._call("GET", self._endpoint(self._get_endpoint, GET_ENDPOINT_ENV), {"accept": "application/json"}, None)
        if not isinstance(job, dict) or not isinstance(job.get("id"), str):
            raise JobApiError("the job API sent no job", 200, job)
        return {"id": job["id"], "body": job.get("body")}

    def progress(self, fraction: float, body: Body = None) -> None:
        """A ``running`` update: ``fraction`` (0 to 1) as its progress, ``body`` forwarded to the control server."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or fraction != fraction or fraction in (float("inf"), float("-inf")):
            raise TypeError(f"progress must be a finite number, not {fraction!r}")
        self._put("running", fraction, body)

    def complete(self, result: Body = None) -> None:
        """The final update: ``result`` is the job's result. Later calls raise JobEndedError."""
        self._put("completed", 1.0, result)

    def fail(self, result: Body = None, exit_code: int = 1, exit: bool = True) -> None:
        """Reports a failure: ``result`` goes out as a last ``running`` update (the details reach the control server,
        in order), then the process exits with ``exit_code`` and the agent reports the job ``failed`` with that code
        and the last lines of output. ``exit=False`` sends the update only."""
        self._put("running", None, result)
        if exit:
            sys.stdout.flush()
            sys.stderr.flush()
            raise SystemExit(exit_code)


_default: Optional[JobClient] = None


def _client() -> JobClient:
    global _default
    if _default is None:
        _default = JobClient()
    return _default


def get_job() -> Dict[str, Any]:
    """The job, ``{"id": ..., "body": ...}``, from FOREMAN_GET_JOB_ENDPOINT. Marks it running."""
    return _client().get_job()


def progress(fraction: float, body: Body = None) -> None:
    """A ``running`` update with ``fraction`` as its progress and ``body`` forwarded as is."""
    _client().progress(fraction, body)


def complete(result: Body = None) -> None:
    """The final update: ``result`` is the job's result."""
    _client().complete(result)


def fail(result: Body = None, exit_code: int = 1) -> NoReturn:
    """``result`` as a last ``running`` update, then exit with ``exit_code``: the agent reports ``failed``."""
    _client().fail(result, exit_code)
    raise SystemExit(exit_code)  # not reached: fail() exits
