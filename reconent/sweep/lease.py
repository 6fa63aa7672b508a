"""One driver per sweep: a lease object in the store, `<storage>/<sweep>/_lease.json`.

The driver of `sweep run` (and `reconent compact`) holds it while it runs: the JSON names the holder
(host, pid, a random token, when it started) and a heartbeat time that a thread rewrites every
`heartbeat` seconds. A second driver of the same sweep and storage refuses (`LeaseHeld`, exit 2)
while the heartbeat is fresh; a lease whose heartbeat is older than `stale_after` seconds belongs to
a dead driver and is taken over, with a warning. A holder on the same host whose process is gone
(a killed driver) is taken over at once.

Taking and renewing are conditional writes where the storage has them (Store.conditional: local
disk, S3, GCS; reconent.sweep.store.objects): the lease is created only if none exists (S3
`If-None-Match: *`, GCS `ifGenerationMatch=0`, local link(2)), and taken over or renewed only if it is
still the version this driver read (S3 `If-Match: <ETag>`, GCS `ifGenerationMatch=<generation>`, local
compare under flock(2)). Of two drivers starting at the same moment exactly one gets it; the other
refuses. Elsewhere (a filesystem without them) the lease falls back to an atomic write read back after
`settle` seconds, which leaves a window for writes slower than `settle` (docs/schema.md).

A lease that cannot be read (garbled, or the storage failing) is an error (`LeaseError`), never taken
for an absent one. A driver that loses its lease (taken over, or not renewed for `stale_after` less
one heartbeat) stops its own work at once: the heartbeat thread interrupts the main thread (Tune stops
its trials), and leaving the `with` block raises `LeaseLost`, whose one line ends the process with
exit 1; if the driver has not stopped `grace` seconds later, the process exits 1 there and then.
Code between experiments can ask with `check_held()`. Heartbeats compare the holder's clock with the
reader's: keep clocks within a few seconds (NTP), far below `stale_after`.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
import warnings
from datetime import datetime, timezone

STALE_AFTER = float(os.environ.get("RECONENT_LEASE_STALE_S", 120))  # seconds without a heartbeat = dead
HEARTBEAT = float(os.environ.get("RECONENT_LEASE_HEARTBEAT_S", 10))
GRACE = 60.0  # seconds a driver that lost its lease has to stop before its process is ended
NAME = "_lease.json"
_HELD: set["Lease"] = set()  # the leases this process holds now (check_held)


class LeaseHeld(ValueError):
    """Another live driver runs this sweep (a usage error: exit 2, nothing written)."""


class LeaseError(OSError):
    """The lease exists but cannot be read: not to be taken for an absent one."""


class LeaseLost(SystemExit):
    """This driver lost its lease: raised to end the process with the message and exit status 1."""

    def __init__(self, message: str):
        super().__init__(message)
        self.code = f"reconent: error: {message}"


def check_held() -> None:
    """Raise LeaseLost if a lease this process holds was lost (call it before starting more work)."""
    for lease in list(_HELD):
        lease.check()


class Lease:
    """`with Lease(store): ...` holds the sweep's lease for the block (see the module doc).

    `on_lost(lease)`: what the heartbeat thread does once the lease is lost; default: interrupt the main
    thread, and end the process if the block has not been left `grace` seconds later."""

    def __init__(self, store, stale_after: float = STALE_AFTER, heartbeat: float = HEARTBEAT,
                 settle: float = 0.5, what: str = "sweep run", on_lost=None, grace: float = GRACE):
        self.store, self.stale_after, self.heartbeat, self.settle = store, stale_after, heartbeat, settle
        self.path = store.path(NAME)
        self.token = uuid.uuid4().hex
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "what": what,
                       "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self.on_lost, self.grace = on_lost or _stop_driver, grace
        self.version: str | None = None  # of the lease object as this driver last wrote it
        self._stop = threading.Event()
        self._left = threading.Event()  # the `with` block was left
        self._thread: threading.Thread | None = None
        self.lost: str | None = None  # why, once another driver took the lease or it could not be renewed

    # ------------------------------------------------------------------ reading and writing
    def _get(self) -> tuple[dict, str] | None:
        """(holder, version) of the lease object, None where there is none; LeaseError where unreadable."""
        try:
            got = self.store.read_object(NAME)
        except OSError as e:
            raise LeaseError(f"lease: cannot read {self.path}: {e}") from e
        if got is None:
            return None
        try:
            holder = json.loads(got[0])
            if not isinstance(holder, dict) or "token" not in holder:
                raise ValueError("not a lease object")
        except ValueError as e:
            raise LeaseError(f"lease: {self.path} is not a lease ({e}); if no driver runs sweep "
                             f"{self.store.name!r}, delete it") from None
        return holder, got[1]

    def read(self) -> dict | None:
        """The current holder, None where nobody holds the lease; LeaseError where it cannot be read."""
        got = self._get()
        return None if got is None else got[0]

    def _data(self) -> bytes:
        return json.dumps({**self.holder, "heartbeat": time.time()}).encode()

    def _refuse(self, cur: dict | None):
        cur = cur or {}
        age = time.time() - float(cur.get("heartbeat", time.time()))
        return LeaseHeld(
            f"lease: sweep {self.store.name!r} in {self.store.uri} is being run by {cur.get('what', 'a driver')} "
            f"on {cur.get('host')} (pid {cur.get('pid')}, since {cur.get('started')}, last heartbeat "
            f"{age:.0f} s ago); wait for it to finish or stop it. A lease without a heartbeat for "
            f"{self.stale_after:.0f} s is taken over ({self.path})")

    # ------------------------------------------------------------------ taking, renewing, giving back
    def acquire(self) -> "Lease":
        for _ in range(3):  # a lease deleted or replaced between our read and our write: look again
            got = self._get()
            if got is not None:
                cur, version = got
                age = time.time() - float(cur.get("heartbeat", 0))
                dead = _dead_here(cur)
                if age < self.stale_after and not dead:
                    raise self._refuse(cur)
                why = "its process is gone" if dead else f"no heartbeat for {age:.0f} s"
                warnings.warn(f"reconent: taking over the lease of sweep {self.store.name!r} from {cur.get('host')} "
                              f"(pid {cur.get('pid')}): {why}", stacklevel=2)
            if not self.store.conditional:
                self._acquire_unconditional()
                break
            self.version = (self.store.create_object(NAME, self._data()) if got is None
                            else self.store.replace_object(NAME, self._data(), got[1]))
            if self.version is not None:
                break
        else:
            raise self._refuse(self.read())
        _HELD.add(self)
        self._thread = threading.Thread(target=self._beat, name="reconent-lease", daemon=True)
        self._thread.start()
        return self

    def _acquire_unconditional(self) -> None:
        """No conditional writes: write, wait `settle`, and go on only if our write is the one read back."""
        self.store.put_object(NAME, self._data())
        time.sleep(self.settle)
        cur = self.read()
        if cur is None or cur.get("token") != self.token:
            raise self._refuse(cur)

    def _renew(self) -> str | None:
        """Rewrite the heartbeat; None where the lease is no longer ours (then: who has it)."""
        if self.store.conditional:
            version = self.store.replace_object(NAME, self._data(), self.version)
            if version is not None:
                self.version = version
                return None
        else:
            cur = self.read()
            if cur is not None and cur.get("token") == self.token:
                self.store.put_object(NAME, self._data())
                return None
        cur = self.read()
        return (f"taken over by {cur.get('what', 'a driver')} on {cur.get('host')} (pid {cur.get('pid')})"
                if cur else "deleted by someone else")

    def _beat(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.heartbeat):
            try:
                taken = self._renew()
            except Exception as e:  # noqa: BLE001 -- a storage hiccup: try again at the next beat, for a while
                if time.monotonic() - renewed < self.stale_after - self.heartbeat:
                    warnings.warn(f"reconent: lease heartbeat failed: {e}", stacklevel=1)
                    continue
                taken = f"not renewed for {time.monotonic() - renewed:.0f} s ({type(e).__name__}: {e})"
            if taken is None:
                renewed = time.monotonic()
                continue
            self.lost = (f"lease: sweep {self.store.name!r} in {self.store.uri} was {taken}: this driver stops "
                         f"(points it finished are stored; rerun once the other driver is done)")
            _HELD.discard(self)
            self.on_lost(self)
            return

    def check(self) -> None:
        """Raise LeaseLost if this lease was lost."""
        if self.lost:
            raise LeaseLost(self.lost)

    def release(self) -> None:
        self._stop.set()
        self._left.set()
        _HELD.discard(self)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        if self.lost:
            return
        try:
            if self.store.conditional and self.version is not None:
                self.store.delete_object(NAME, self.version)
            elif (self.read() or {}).get("token") == self.token:
                self.store.remove_object(NAME)
        except OSError:
            pass  # left behind: the next driver finds it stale, or this host's process gone

    def __enter__(self):
        # A lost lease interrupts the main thread with SIGINT (_stop_driver). A process started in the background by a
        # shell (nohup, `&`, some CI runners) inherits SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: the driver would run on until the grace period's hard exit. So while the lease is held,
        # an ignored SIGINT gets Python's default handler (Tune installs its own during an experiment anyway).
        self._sigint = None
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            self._sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
        return self.acquire()

    def __exit__(self, *exc):
        try:
            self.release()
        finally:
            if self._sigint is not None:
                signal.signal(signal.SIGINT, self._sigint)
        self.check()


def _stop_driver(lease: Lease) -> None:
    """Interrupt the main thread (KeyboardInterrupt, or Tune's graceful stop of its trials); `Lease.__exit__`
    then raises LeaseLost. A driver still inside the block after `grace` seconds is ended, exit 1."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    if not lease._left.wait(lease.grace):
        print(f"reconent: error: {lease.lost}", file=sys.stderr, flush=True)
        os._exit(1)


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
