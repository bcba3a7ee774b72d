"""Memory per idle connected client (not a test: run by hand, BENCHMARKS.md has the figures).

    MC_FFI_PYTHON=OUT/python MC_SERVER_BIN=target/debug/mc-server python3 idle_memory.py 200

Starts mc-server --demo (plain http), connects one client, reads VmRSS, connects N more, waits
until they are all connected and quiet, reads VmRSS again.
"""

import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.environ["MC_FFI_PYTHON"])
import mc_ffi  # noqa: E402


def rss_kib():
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1))


def main(n):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tempfile.mkdtemp(prefix="mc-idle-")
    server = subprocess.Popen(
        [os.environ["MC_SERVER_BIN"], "serve", "--demo", "--listen", f"127.0.0.1:{port}",
         "--database", f"sqlite://{db}/mc.db", "--max-connections-per-user", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    password = None
    for line in server.stdout:
        found = re.search(r"alice / (\S+)", line)
        if found:
            password = found.group(1)
        if line.startswith("listening"):
            break
    threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        def connected_client():
            client = mc_ffi.McClient(url)
            asyncio.run(client.sign_in("", "alice", password))
            asyncio.run(client.connect())
            return client

        first = connected_client()
        while not first.state().is_connected():
            time.sleep(0.05)
        time.sleep(1)
        before = rss_kib()
        clients = [connected_client() for _ in range(n)]
        while not all(c.state().is_connected() for c in clients):
            time.sleep(0.1)
        time.sleep(2)
        after = rss_kib()
        print(f"{n} idle clients: VmRSS {before} KiB -> {after} KiB, "
              f"{(after - before) * 1024 / n:.0f} bytes per client")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
