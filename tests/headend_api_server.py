"""The head-end API on a real uvicorn server on 127.0.0.1 (a free port), in a thread of the
test process, for tests/test_headend_api*.py; and API keys of each role."""
import asyncio
import threading
import time

import httpx

from headend import apikeys, keyring
from headend.api import create_app
from headend.api.server import bind, make_server
from tests.waiting import wait_until

VK = bytes(range(32))  # test keys, not the demo ones
MASTER = bytes(range(100, 132))


def ring():
    return keyring.Keyring({"default": keyring.KeySet(VK, MASTER)}, source="test keys")


class ApiServer:
    """create_app(db_url) served by uvicorn in a thread; `url` is its base. `client(key)` is an
    httpx.Client sending that key."""

    def __init__(self, db_url, keys=None):
        self.sock = bind("127.0.0.1:0")
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.server = make_server(create_app(db_url, keys or ring()))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), "API started",
                   within=30)
        assert self.server.started, "the API server did not start"

    def _run(self):
        asyncio.run(self.server.serve([self.sock]))

    def client(self, key=None, **headers):
        if key is not None:
            headers["Authorization"] = "Bearer " + key
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=30)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def make_keys(db):
    """{role: key} with one key of each role."""
    return {role: apikeys.create(db, role, "test " + role, "test", time.time())[1]
            for role in apikeys.ROLES}


def error_of(response, status):
    """The error document of an answer, after checking its status and shape."""
    assert response.status_code == status, (response.status_code, response.text)
    doc = response.json()
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message", "field"}, doc
    return doc["error"]
