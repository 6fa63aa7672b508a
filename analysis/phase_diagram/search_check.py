"""The check behind `eval_depths: search` (docs/performance.md, "Deep probes"): replay the search on every
exhaustive profile we have and compare its cutoff with the exhaustive one.

Profiles: the stored sweeps given (default: this study's depth-100 sweep, its depth-200 sweep at 938 steps and the
boundary study's depth-40 probes, all `eval_depths: all`), plus the depth-200, 500-sample references of
cutoff_table.json. A layer's normalised median does not depend on which other layers ran, so the replay
(`probe.search_replay`) is exact.
Writes search_check.json next to this file; prints one line per profile. Run from the repository root:
    .venv/bin/python analysis/phase_diagram/search_check.py [STORE ...]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from reconent.science import probe as P
from reconent.science.entropy import cutoff_from_normalised
from reconent.sweep import results

HERE = Path(__file__).resolve().parent


def profiles(stores: list[str]):
    for r in json.loads((HERE / "cutoff_table.json").read_text()):
        yield f"cutoff_table σ_w²={r['sigma_w2']} depth 200", np.array(r["norm_median_reference"]), 0.005
    for uri in stores:
        for _, row in results.load(uri).iterrows():
            nm = np.array([np.nan if v is None else v for v in row["relative_entropy_norm_median"]], dtype=float)
            if row["status"] == "ok" and not np.isnan(nm).any():  # exhaustive profiles only
                yield (f"{Path(uri).name} σ_w²={row['sigma_w2']:g} depth {row['depth']} seed {row['seed']}", nm,
                       float(row["rtol"]))


def main(stores: list[str]) -> None:
    rows = []
    for name, nm, rtol in profiles(stores):
        L, exact = len(nm), cutoff_from_normalised(nm, rtol)
        found, layers = P.search_replay(nm, rtol)
        rows.append({"profile": name, "depth": L, "cutoff": exact, "search": found, "layers_evaluated": len(layers),
                     "decoder_applications": sum(layers), "exhaustive_applications": L * (L + 1) // 2})
        print(f"{name:<48} cutoff {exact:>3}  search {found:>3}  {len(layers):>3} layers, "
              f"{sum(layers):>5} of {L * (L + 1) // 2} decoder applications", flush=True)
    same = sum(r["cutoff"] == r["search"] for r in rows)
    print(f"search finds the exhaustive cutoff exactly on {same} of {len(rows)} profiles (strides at depth 200: "
          f"{P.search_strides(200)}, span {P.SEARCH_SPAN})")
    (HERE / "search_check.json").write_text(json.dumps({"strides_200": P.search_strides(200), "span": P.SEARCH_SPAN,
                                                        "exact": same, "profiles": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["analysis/phase_diagram/data/phase_diagram", "analysis/phase_diagram/data/phase_diagram_938",
                          "analysis/boundary_mnist5k/data/boundary_mnist5k"])
