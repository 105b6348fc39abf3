"""Unit tests of foreman_job against a local job API (http.server): run with `python3 -m unittest` in this folder,
or through the Node suite (test/job-kits.test.ts)."""

from __future__ import annotations

import json
import socket
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple

import foreman_job
from foreman_job import JobApiError, JobClient, JobEndedError, RetryInfo


class FakeJobApi:
    """A job API that records each request and answers from a queue of (status, body) replies (default 200)."""

    def __init__(self, port: int = 0) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.replies: List[Tuple[int, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                api.requests.append({"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                status, reply = api.replies.pop(0) if api.replies else (200, None)
                if reply is None:
                    reply = {"id": "job-1", "body": {"n": 1}} if self.command == "GET" else {"status": "accepted", "progress": 0}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = answer
            do_PUT = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/job/job-1?token=s3cret"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JobClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.api = FakeJobApi()
        self.retries: List[RetryInfo] = []
        self.client = JobClient(self.api.url(), self.api.url(), retry_for=5, on_retry=self.retries.append)

    def tearDown(self) -> None:
        self.api.close()

    def test_get_progress_complete(self) -> None:
        self.assertEqual(self.client.get_job(), {"id": "job-1", "body": {"n": 1}})
        self.client.progress(0.25, {"step": 1})
        self.client.complete({"result": 2})
        get, running, done = self.api.requests
        self.assertEqual((get["method"], get["path"]), ("GET", "/job/job-1?token=s3cret"))
        self.assertEqual(running["headers"]["x-foreman-job-status"], "running")
        self.assertEqual(running["headers"]["x-foreman-job-progress"], "0.25")
        self.assertEqual(running["headers"]["content-type"], "application/json")
        self.assertEqual(json.loads(running["body"]), {"step": 1})
        self.assertEqual(done["headers"]["x-foreman-job-status"], "completed")
        self.assertEqual(json.loads(done["body"]), {"result": 2})
        self.assertEqual(self.retries, [])

    def test_bodies_text_bytes_and_none(self) -> None:
        self.client.progress(0.5, "plain text")
        self.client.progress(0.6, b"\x00\x01")
        self.client.progress(0.7)
        text, raw, empty = self.api.requests
        self.assertEqual((text["headers"]["content-type"], text["body"]), ("text/plain; charset=utf-8", b"plain text"))
        self.assertEqual((raw["headers"]["content-type"], raw["body"]), ("application/octet-stream", b"\x00\x01"))
        self.assertNotIn("content-type", empty["headers"])
        self.assertEqual(empty["body"], b"")

    def test_progress_must_be_a_finite_number(self) -> None:
        for bad in (float("nan"), float("inf"), "0.5", True):
            with self.assertRaises(TypeError, msg=repr(bad)):
                self.client.progress(bad)  # type: ignore[arg-type]
        self.assertEqual(self.api.requests, [])

    def test_503_is_retried_and_409_ends(self) -> None:
        self.api.replies = [(503, {"error": "retry"}), (503, {"error": "retry"}), (200, None), (409, {"error": "job already ended"})]
        self.client.progress(0.1)
        self.assertEqual([r.reason for r in self.retries], ["503", "503"])
        with self.assertRaises(JobEndedError) as ended:
            self.client.complete({})
        self.assertEqual(ended.exception.status, 409)
        self.assertIn("job already ended", str(ended.exception))
        self.assertNotIn("s3cret", str(ended.exception))

    def test_other_errors_are_final(self) -> None:
        self.api.replies = [(400, {"error": "x-foreman-job-status must be running or completed"})]
        with self.assertRaises(JobApiError) as err:
            self.client.progress(0.1)
        self.assertEqual(err.exception.status, 400)
        self.assertEqual(len(self.api.requests), 1)

    def test_connection_refused_is_retried_until_the_api_is_back(self) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}/job/job-1?token=s3cret"
        client = JobClient(url, url, retry_for=20, on_retry=self.retries.append)
        later: Dict[str, Optional[FakeJobApi]] = {"api": None}
        timer = threading.Timer(1.0, lambda: later.__setitem__("api", FakeJobApi(port)))
        timer.start()
        try:
            client.progress(0.3)
            back = later["api"]
            self.assertIsNotNone(back)
            assert back is not None
            self.assertEqual(len(back.requests), 1)
            self.assertTrue(self.retries, "retried while nothing listened")
            self.assertTrue(all(r.reason != "503" for r in self.retries), [r.reason for r in self.retries])
        finally:
            timer.cancel()
            if later["api"] is not None:
                later["api"].close()

    def test_gives_up_after_retry_for(self) -> None:
        url = f"http://127.0.0.1:{free_port()}/job/x?token=t"
        client = JobClient(url, url, retry_for=0.5)
        with self.assertRaises(JobApiError) as err:
            client.get_job()
        self.assertEqual(err.exception.status, 0)

    def test_fail_sends_the_details_then_exits(self) -> None:
        with self.assertRaises(SystemExit) as exited:
            self.client.fail({"error": "disk full"}, exit_code=4)
        self.assertEqual(exited.exception.code, 4)
        (update,) = self.api.requests
        self.assertEqual(update["headers"]["x-foreman-job-status"], "running")
        self.assertNotIn("x-foreman-job-progress", update["headers"])
        self.assertEqual(json.loads(update["body"]), {"error": "disk full"})

    def test_the_environment_names_the_endpoints(self) -> None:
        import os

        saved = {k: os.environ.get(k) for k in (foreman_job.GET_ENDPOINT_ENV, foreman_job.PUT_ENDPOINT_ENV)}
        try:
            os.environ.pop(foreman_job.GET_ENDPOINT_ENV, None)
            with self.assertRaises(JobApiError):
                JobClient().get_job()
            os.environ[foreman_job.GET_ENDPOINT_ENV] = self.api.url()
            self.assertEqual(JobClient().get_job()["id"], "job-1")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


if __name__ == "__main__":
    unittest.main()
