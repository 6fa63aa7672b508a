"""A reused trial actor gives a finished trial's memory back (reconent.sweep.trainables.release_memory)."""
import sys
import threading

import pytest

from reconent.science import probe as P
from reconent.science.archs.mlp import mlp
from reconent.sweep.trainables import release_memory


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e9


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas and /proc: Linux only")
def test_release_memory_returns_what_a_probe_in_a_trial_thread_freed():
    """Tune runs each trial in a new thread; what a probe freed stays in that thread's malloc arena until
    release_memory trims it (measured: a depth-60 probe of width 784 keeps ~0.5 GB; trimmed, ~0)."""
    import torch

    g = torch.Generator().manual_seed(0)
    x, ev = torch.rand(256, 784, generator=g), torch.rand(50, 784, generator=g)

    def trial():
        P.probe(mlp(60, 784, 784, "tanh", 1.76, 0.05, seed=0), x, ev, epochs=1, eval_depths="all")

    trial()  # once before measuring: the first probe also loads code and fills caches
    before = _rss_gb()
    t = threading.Thread(target=trial)
    t.start()
    t.join()
    kept = _rss_gb() - before
    release_memory()
    after = _rss_gb() - before
    assert kept > 0.2, f"glibc returned the probe's memory by itself ({kept:.2f} GB kept): the premise changed"
    assert after < 0.1, f"release_memory left {after:.2f} GB of {kept:.2f} GB the probe had freed"
