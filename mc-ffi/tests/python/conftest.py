"""Fixtures for the end-to-end tests of the generated Python bindings.

They start a real `mc-server` (with TLS and the demo organization) and load the bindings
that `mc-ffi/generate-bindings.sh` wrote. Environment:

- MC_FFI_PYTHON: the directory holding mc_ffi.py and libmc_ffi.so
- MC_SERVER_BIN: the mc-server binary
- MC_TEST_CERT, MC_TEST_KEY: a PEM certificate for 127.0.0.1 and its key

`mc-ffi/tests/ffi_bindings.rs` sets them all and runs pytest; see mc-ffi/README.md.
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.environ["MC_FFI_PYTHON"])

import mc_ffi  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One mc-server process on a fixed port; stop() and start() keep its database."""

    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="mc-ffi-test-")
        self.db = f"sqlite://{self.dir}/mc.db"
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.extra = list(extra)
        self.proc = None
        self.alice_password = None
        with open(os.environ["MC_TEST_CERT"]) as f:
            self.ca_pem = f.read()

    def start(self):
        self.proc = subprocess.Popen(
            [
                os.environ["MC_SERVER_BIN"], "serve", "--demo",
                "--listen", f"127.0.0.1:{self.port}", "--database", self.db,
                "--tls-cert", os.environ["MC_TEST_CERT"], "--tls-key", os.environ["MC_TEST_KEY"],
                "--rate-limit-per-sec", "100", "--rate-limit-burst", "200",
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.time() + 30
        for line in self.proc.stdout:
            found = re.search(r"alice / (\S+)", line)
            if found and self.alice_password is None:
                self.alice_password = found.group(1)
            if line.startswith("listening on "):
                break
            if time.time() > deadline:
                raise RuntimeError("mc-server did not start")
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        assert self.alice_password, "the demo printed alice's password"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def client(self):
        return mc_ffi.McClient.with_ca(self.url, self.ca_pem)


class Recorder(mc_ffi.McListener):
    """Records every callback; waits on conditions from the test thread."""

    def __init__(self):
        self.cond = threading.Condition()
        self.states = []
        self.messages = []
        self.texts = []
        self.systems = []
        self.tokens = []
        self.outbox = []

    def _add(self, where, item):
        with self.cond:
            where.append(item)
            self.cond.notify_all()

    def on_state(self, state):
        self._add(self.states, state)

    def on_message(self, message):
        self._add(self.messages, message)

    def on_reply_text(self, session_id, run_id, text):
        self._add(self.texts, (session_id, run_id, text))

    def on_system(self, event):
        self._add(self.systems, event)

    def on_tokens(self, access, refresh):
        self._add(self.tokens, (access, refresh))

    def on_outbox(self, pending):
        self._add(self.outbox, pending)

    def wait(self, predicate, timeout=30, what="condition"):
        with self.cond:
            if not self.cond.wait_for(predicate, timeout=timeout):
                raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def server():
    s = Server()
    s.start()
    yield s
    s.stop()
