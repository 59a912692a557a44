"""A flood of failed logins against the server `make run` starts: worker memory and a page's latency.

`python -m bench.logins`: 32 parallel logins with new usernames (each one an Argon2id hash),
while a logged-in person reloads the inbox. Prints each worker's memory before and at its
peak, and the page's latency during the flood.
"""

import http.cookiejar
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
LOGINS = 32


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sms-inbox-logins-") as workdir:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{workdir}/inbox.sqlite3",
            "MESSENTE_SHARED_SECRET": "x",
            "SECRET_KEY": "bench",
            "BIND": f"127.0.0.1:{port}",
        }
        flask = [sys.executable, "-m", "flask", "--app", "app"]
        subprocess.run([*flask, "init-db"], cwd=ROOT, env=env, check=True, capture_output=True)
        subprocess.run(
            [*flask, "create-user", "alice"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            input=f"{PASSWORD}\n{PASSWORD}\n",
            text=True,
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "app.server"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            measure(server, f"http://127.0.0.1:{port}")
        finally:
            server.terminate()
            server.wait()


def measure(server: subprocess.Popen, base: str) -> None:
    for _ in range(150):
        try:
            urllib.request.urlopen(base + "/login", timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    person = browser()
    assert log_in(person, base, "alice", PASSWORD) == 200
    workers = [int(pid) for pid in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()]
    before = {pid: rss_mib(pid) for pid in workers}
    peak = dict(before)
    latencies: list[float] = []
    flooding = threading.Event()
    flooding.set()

    def watch_memory():
        while flooding.is_set():
            for pid in workers:
                peak[pid] = max(peak[pid], rss_mib(pid))
            time.sleep(0.05)

    def reload_inbox():
        while flooding.is_set():
            started = time.monotonic()
            person.open(base + "/", timeout=60).read()
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)

    helpers = [threading.Thread(target=watch_memory), threading.Thread(target=reload_inbox)]
    for helper in helpers:
        helper.start()
    started = time.monotonic()
    with ThreadPoolExecutor(LOGINS) as pool:
        statuses = list(pool.map(lambda n: log_in(browser(), base, f"new-user-{n}", "wrong password"), range(LOGINS)))
    elapsed = time.monotonic() - started
    flooding.clear()
    for helper in helpers:
        helper.join()

    print(f"{LOGINS} parallel failed logins with new usernames: answered {sorted(set(statuses))} in {elapsed:.1f} s")
    for pid in workers:
        print(f"  worker {pid}: {before[pid]:.0f} MiB before, {peak[pid]:.0f} MiB at its peak")
    print(
        f"  a logged-in inbox page meanwhile: {len(latencies)} loads, median "
        f"{statistics.median(latencies) * 1000:.0f} ms, slowest {max(latencies) * 1000:.0f} ms"
    )


def browser() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def log_in(opener: urllib.request.OpenerDirector, base: str, username: str, password: str) -> int:
    page = opener.open(base + "/login", timeout=60).read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": token}).encode()
    try:
        return opener.open(base + "/login", data=form, timeout=60).status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    main()
