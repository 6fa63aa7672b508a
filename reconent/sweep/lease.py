"""One driver per sweep: a lease object in the store, `<storage>/<sweep>/_lease.json`.

The driver of `sweep run` (and `reconent compact`) holds it while it runs: the JSON names the holder
(host, pid, a random token, when it started) and a heartbeat time that a thread rewrites every
`heartbeat` seconds. A second driver of the same sweep and storage refuses (`LeaseHeld`, exit 2)
while the heartbeat is fresh; a lease whose heartbeat is older than `stale_after` seconds belongs to
a dead driver and is taken over, with a warning.

Every write is the store's atomic write (a _tmp- object, then one move), so a reader sees a whole
lease or none. The residual race: neither pyarrow's S3 nor its local filesystem offers an atomic
create-if-absent, so two drivers starting within the same moment can both write. Each one reads the
lease back after `settle` seconds and only the one whose token it finds goes on; the other refuses.
That closes the window except for writes slower than `settle` (documented in docs/schema.md).
A holder on the same host whose process is gone (a killed driver) is taken over at once.
Heartbeats compare the holder's clock with the reader's: keep clocks within a few seconds
(NTP), far below `stale_after`.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings
from datetime import datetime, timezone

STALE_AFTER = float(os.environ.get("RECONENT_LEASE_STALE_S", 120))  # seconds without a heartbeat = dead
HEARTBEAT = float(os.environ.get("RECONENT_LEASE_HEARTBEAT_S", 10))
NAME = "_lease.json"


class LeaseHeld(ValueError):
    """Another live driver runs this sweep (a usage error: exit 2, nothing written)."""


class Lease:
    """`with Lease(store): ...` holds the sweep's lease for the block (see the module doc)."""

    def __init__(self, store, stale_after: float = STALE_AFTER, heartbeat: float = HEARTBEAT,
                 settle: float = 0.5, what: str = "sweep run"):
        self.store, self.stale_after, self.heartbeat, self.settle = store, stale_after, heartbeat, settle
        self.path = store.path(NAME)
        self.token = uuid.uuid4().hex
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "what": what,
                       "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # set when another driver took the lease over while we held it

    def read(self) -> dict | None:
        try:
            with self.store.fs.open_input_stream(self.path) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except (ValueError, OSError):  # unreadable: treat as absent rather than block the sweep forever
            return None

    def _write(self) -> None:
        self.store._put(self.store.root, NAME, json.dumps({**self.holder, "heartbeat": time.time()}).encode())

    def _refuse(self, cur: dict, age: float):
        return LeaseHeld(
            f"lease: sweep {self.store.name!r} in {self.store.uri} is being run by {cur.get('what', 'a driver')} "
            f"on {cur.get('host')} (pid {cur.get('pid')}, since {cur.get('started')}, last heartbeat "
            f"{age:.0f} s ago); wait for it to finish or stop it. A lease without a heartbeat for "
            f"{self.stale_after:.0f} s is taken over ({self.store.path(NAME)})")

    def acquire(self) -> "Lease":
        cur = self.read()
        if cur and cur.get("token") != self.token:
            age = time.time() - float(cur.get("heartbeat", 0))
            dead = _dead_here(cur)
            if age < self.stale_after and not dead:
                raise self._refuse(cur, age)
            why = "its process is gone" if dead else f"no heartbeat for {age:.0f} s"
            warnings.warn(f"reconent: taking over the lease of sweep {self.store.name!r} from {cur.get('host')} "
                          f"(pid {cur.get('pid')}): {why}", stacklevel=2)
        self._write()
        time.sleep(self.settle)  # a driver that wrote at the same moment: the last write wins, the other refuses
        cur = self.read()
        if cur is None or cur.get("token") != self.token:
            raise self._refuse(cur or {}, time.time() - float((cur or {}).get("heartbeat", time.time())))
        self._thread = threading.Thread(target=self._beat, name="reconent-lease", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                cur = self.read()
                if cur is not None and cur.get("token") != self.token:
                    self.lost = True  # someone judged us dead: say so once, and stop claiming it
                    warnings.warn(f"reconent: the lease of sweep {self.store.name!r} was taken over by "
                                  f"{cur.get('host')} (pid {cur.get('pid')})", stacklevel=1)
                    return
                self._write()
            except Exception as e:  # noqa: BLE001 -- a storage hiccup: try again at the next beat
                warnings.warn(f"reconent: lease heartbeat failed: {e}", stacklevel=1)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        cur = self.read()
        if cur is not None and cur.get("token") == self.token:
            try:
                self.store.fs.delete_file(self.path)
            except OSError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _dead_here(holder: dict) -> bool:
    """The holder ran on this host and its process no longer exists (a killed driver: no need to wait
    for its heartbeat to go stale). Holders on other hosts are judged by their heartbeat only."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False
