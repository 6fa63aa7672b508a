"""The boundary strategy: an Optuna study chooses which (σ_w², depth) points to train, to locate the true
trainable depth L*(σ_w²) of every column with as few trainings as possible.

The model, per column (one σ_w² with the rest of its coordinates): L is the deepest trainable depth, on
{dmin-1 (nothing trains), ..., dmax (everything up to dmax trains)}. A training at depth d says trainable
with probability 1-ε if d <= L and ε otherwise. Labels are noisy near the boundary (a trainable depth can
sit above an untrainable one, seeds differ), so ε is not 0: it is `noise` at the boundary and falls
linearly to a floor (`FLOOR`) over a band of max(2, 5% of L) layers. The floor keeps one odd label far
from the boundary from ruling a depth out for good.
- Prior: the probes' prediction where the sweep has probes (log-normal around the deepest probe's cutoff;
  "≥ probe depth" when the probe saw no plateau), mixed with a log-uniform over the range.
- Posterior: exact, on the discrete grid of L (Bayes' rule with every stored label).
- Acquisition: the expected information gain about L of one more label at each untried depth, the
  level-set ("straddle") criterion made exact for this model; it peaks where the posterior says a
  depth is as likely trainable as not. Greedy over all unresolved columns, each column's gain weighted
  by its unresolved mass (1 - P(|L - median| <= resolution)), and divided by the training's expected
  seconds (`CostModel`) to the power COST_POWER: information per second, as cost-aware level-set searches
  do (mfEGRA, Chaudhuri et al. 2019), tempered because the budget counts trainings (see COST_POWER). A batch
  of k proposals treats the points in flight as if they had come back with their more likely label ("kriging
  believer").
- Cost: seconds per epoch grow with depth (fitted per architecture to the stored rows), and the epochs a
  training runs depend on its label: a trainable one stops once it passes, an untrainable one runs its
  budget unless the stop rule (`train.stop`) ends it. Expected seconds = P(trainable)·cost(trainable) +
  P(untrainable)·cost(untrainable), with P from the posterior.
- Anytime verdicts: a run the stop rule ended is a verdict (untrainable) at its budget, like one that ran
  it out; its seconds and epochs teach the cost model what an untrainable run costs under the rule.
- A column is resolved when P(|L - median| <= resolution) >= `confidence`; the search stops when every
  column is resolved or the budget (trainings, stored ones included) is spent.

Optuna is the engine that records it: every proposal is an Optuna trial (params: column, depth, seed;
value: 1 trainable, 0 not), asked for through `StraddleSampler`. On every start the study is rebuilt from
the stored parts, in a canonical order, and the sampler is deterministic, so a killed driver resumes
without retraining a stored point and the same spec plus the same parts gives the same next proposals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

FLOOR = 0.02  # label noise far from the boundary
BAND_FRAC, BAND_MIN = 0.05, 2.0  # the noisy band: ±max(BAND_MIN, BAND_FRAC·L) layers
PRIOR_SD = 0.25  # log-depth sd of the prior around the probe's prediction (a factor of ~1.3)
PRIOR_MIX = 0.1  # weight of the log-uniform part of the prior: a wrong probe costs trainings, not the answer
# The acquisition is information per (expected second)^COST_POWER. Under a budget of trainings, 1 (per second)
# starves the expensive columns: `reconent bench search` measured max errors of 28-56 layers at budget 100,
# 11-14x fewer training-seconds than the grid; 0 (per training) meets the errors at 3.6-4.1x. 0.5 sits between
# (4.3-5.3x, median error <= 1.44, max <= 5 on 4 of 5 seeds); docs/budgets.md has the table.
COST_POWER = 0.5


@dataclass(frozen=True)
class Prior:
    """A column's prior on L: the probes' predicted L*, or `censored`: the probe saw no plateau, L* >= depth."""
    depth: float
    censored: bool = False


class Model:
    """Likelihoods on the grid depth d × hypothesis L, shared by every column of one depth range."""

    def __init__(self, dmin: int, dmax: int, noise: float = 0.25):
        self.dmin, self.dmax, self.noise = dmin, dmax, noise
        self.depths = np.arange(dmin, dmax + 1)
        self.L = np.arange(dmin - 1, dmax + 1)
        d, L = self.depths[:, None].astype(float), self.L[None, :].astype(float)
        band = np.maximum(BAND_MIN, BAND_FRAC * L)
        eps = FLOOR + (noise - FLOOR) * np.clip(1 - np.abs(d - L) / band, 0, 1)
        self.p1 = np.where(d <= L, 1 - eps, eps)  # P(trainable | d, L)
        self.log1, self.log0 = np.log(self.p1), np.log1p(-self.p1)
        self.h1 = _entropy(self.p1)  # H(label | d, L)

    def prior(self, prior: Prior | None) -> np.ndarray:
        L = np.maximum(self.L, 0.5).astype(float)
        flat = 1.0 / (L + 1.0)  # log-uniform
        flat /= flat.sum()
        if prior is None:
            return np.log(flat)
        z = (np.log(L) - math.log(max(min(prior.depth, self.dmax), 0.5))) / PRIOR_SD
        inf = np.exp(-0.5 * z ** 2)
        if prior.censored:  # L* >= the probe's depth: flat above it, the same log-normal tail below
            inf = np.where(z >= 0, flat / flat[-1], inf)
        if inf.sum() <= 0:
            inf = flat
        inf /= inf.sum()
        return np.log((1 - PRIOR_MIX) * inf + PRIOR_MIX * flat)

    def posterior(self, log_prior: np.ndarray, obs) -> np.ndarray:
        """P(L | labels); `obs`: (depth, label) pairs."""
        lp = log_prior.copy()
        for d, y in obs:
            i = int(d) - self.dmin
            lp += self.log1[i] if y else self.log0[i]
        lp -= lp.max()
        p = np.exp(lp)
        return p / p.sum()

    def gain(self, post: np.ndarray) -> np.ndarray:
        """Expected information (nats) about L of one label at each depth."""
        return _entropy(self.p1 @ post) - self.h1 @ post

    def summary(self, post: np.ndarray, resolution: float, q: float = 0.1) -> dict:
        """Median and a central (1-2q) credible interval of L, and the mass within ±resolution of the median."""
        cdf = np.cumsum(post)
        pick = lambda x: float(self.L[min(int(np.searchsorted(cdf, x)), len(self.L) - 1)])  # noqa: E731
        med = pick(0.5)
        near = float(post[np.abs(self.L - med) <= resolution].sum())
        return {"median": med, "lo": pick(q), "hi": pick(1 - q), "mass": near}


def _entropy(p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


class CostModel:
    """Expected seconds of one training at each depth, from the stored rows.

    seconds = per_epoch(depth) × the epochs it runs. per_epoch(depth) = a + b·depth, fitted by least squares to
    each architecture's rows (seconds / fraction of the budget run; the pooled rows, then the prior `1 + depth`
    scaled to them, where an architecture has too few). The epochs depend on the label: an untrainable run
    runs the budget unless a stop rule ends it (the mean fraction its rows ran); a trainable one stops once it
    passes, later the closer it sits to its column's boundary L: fraction = min(1, c·(depth/L)^k), fitted in
    log-log to the trainable rows against their column's posterior median (a constant mean with fewer than
    three). Means are shrunk toward a prior (`PRIOR_FRACTION`, one pseudo-row). Only ratios matter to the
    acquisition, so before any row the units are arbitrary."""

    PRIOR_FRACTION = {True: 0.5, False: 1.0}

    def __init__(self):
        self.rows: list[tuple] = []  # (arch, depth, seconds, fraction of the budget run, label, depth / L)

    def add(self, arch, depth: int, seconds: float | None, fraction: float | None, label: bool | None,
            closeness: float | None = None) -> None:
        """A finished training; `closeness`: depth / its column's boundary (posterior median) when known."""
        if label is None or seconds is None or fraction is None or not (seconds > 0 and fraction > 0):
            return
        self.rows.append((arch, int(depth), float(seconds), min(float(fraction), 1.0), bool(label), closeness))

    def _line(self, arch) -> tuple[float, float]:
        """(a, b) of the seconds of a whole budget = a + b·depth for `arch`: its own fit, the pooled one, or the
        prior."""
        for rows in ([r for r in self.rows if r[0] == arch], self.rows):
            d = np.array([r[1] for r in rows], float)
            y = np.array([r[2] / r[3] for r in rows], float)
            if len(set(d)) >= 2:
                b, a = np.polyfit(d, y, 1)
                if b > 0:
                    return max(a, 0.0), b
            if len(d):  # one depth (or no slope yet): the prior's shape, scaled to the rows
                k = float(np.mean(y / (1 + d)))
                return k, k
        return 1.0, 1.0

    def _mean(self, label: bool) -> float:
        f = [r[3] for r in self.rows if r[4] == label]
        return (self.PRIOR_FRACTION[label] + sum(f)) / (1 + len(f))

    def _trainable(self) -> tuple[float, float]:
        """(c, k) of a trainable run's fraction = min(1, c·x^k), x = depth / L; k 0 is a constant."""
        x = np.array([r[5] for r in self.rows if r[4] and r[5] is not None and r[5] > 0], float)
        f = np.array([r[3] for r in self.rows if r[4] and r[5] is not None and r[5] > 0], float)
        if len(set(np.round(x, 6))) >= 3:
            k, logc = np.polyfit(np.log(x), np.log(f), 1)
            k = float(np.clip(k, 0.0, 6.0))
            return float(np.exp(np.mean(np.log(f) - k * np.log(x)))), k
        return self._mean(True), 0.0

    def expected(self, arch, depths: np.ndarray, p1: np.ndarray, post: np.ndarray, L: np.ndarray) -> np.ndarray:
        """Expected seconds at `depths`, given P(trainable | depth, L) `p1` (depths × L) and the posterior on L."""
        a, b = self._line(arch)
        d = np.asarray(depths, float)
        c, k = self._trainable()
        x = d[:, None] / np.maximum(np.asarray(L, float), 1.0)[None, :]
        frac = p1 * np.minimum(1.0, c * x ** k) + (1 - p1) * self._mean(False)
        return (a + b * d) * (frac @ post)

    def fractions(self) -> dict:
        c, k = self._trainable()
        return {"untrainable": self._mean(False), "trainable_c": c, "trainable_k": k}


class StraddleSampler(optuna.samplers.BaseSampler):
    """An Optuna sampler whose every proposal is `BoundarySearch.choose()` for the study as it stands."""

    def __init__(self, search: "BoundarySearch"):
        self.search = search

    def infer_relative_search_space(self, study, trial):
        return dict(self.search.space)

    def sample_relative(self, study, trial, search_space):
        if not search_space:
            return {}
        pick = self.search.choose(exclude=trial.number)
        if pick is None:
            raise RuntimeError("the boundary search has nothing to propose (check finished() before asking)")
        c, d, s = pick
        return {"column": c, "depth": d, "seed": s}

    def sample_independent(self, study, trial, param_name, param_distribution):
        raise RuntimeError(f"unexpected independent parameter {param_name!r}")


class BoundarySearch:
    """The search over column indices, free of points and of Ray: `add` stored labels, `ask` for a batch,
    `tell` results. `bench search` drives it with an oracle, `BoundaryStrategy` with Tune trials."""

    def __init__(self, n_columns: int, dmin: int, dmax: int, budget: int, resolution: float = 1.0,
                 priors: list[Prior | None] | None = None, seeds=(0,), noise: float = 0.25, confidence: float = 0.9,
                 archs: list | None = None, cost_power: float = COST_POWER):
        self.model = Model(dmin, dmax, noise)
        # `archs`: each column's architecture (the cost model fits one line per architecture); `cost_power` 0:
        # information per training, 1: per second
        self.archs, self.cost_power = list(archs or [None] * n_columns), float(cost_power)
        self.n, self.budget, self.resolution, self.confidence = n_columns, budget, resolution, confidence
        self.seeds = list(seeds)
        priors = priors or [None] * n_columns
        self.log_prior = [self.model.prior(p) for p in priors]
        self.space = {"column": IntDistribution(0, n_columns - 1), "depth": IntDistribution(dmin, dmax),
                      "seed": CategoricalDistribution(self.seeds)}
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction="maximize", sampler=StraddleSampler(self))
        self.running: dict[int, optuna.trial.Trial] = {}

    # ------------------------------------------------------------------ recording
    def add(self, column: int, depth: int, seed, label: bool | None, seconds: float | None = None,
            fraction: float | None = None) -> None:
        """A stored result (label None: the point ran but gives no label, e.g. a science error); `seconds` it took
        and the `fraction` of its epoch budget it ran (the cost model's data), when known."""
        params = {"column": int(column), "depth": int(depth), "seed": seed}
        attrs = {"seconds": seconds, "fraction": fraction}
        if label is None:
            t = optuna.trial.create_trial(params=params, distributions=self.space, state=TrialState.FAIL,
                                          user_attrs=attrs)
        else:
            t = optuna.trial.create_trial(params=params, distributions=self.space, value=float(bool(label)),
                                          user_attrs=attrs)
        self.study.add_trial(t)

    def ask(self, k: int) -> list[tuple[int, int, int, object]]:
        """Up to k new proposals (trial number, column, depth, seed), each recorded as a running Optuna trial."""
        out = []
        for _ in range(k):
            if self.finished():
                break
            t = self.study.ask(self.space)
            self.running[t.number] = t
            out.append((t.number, t.params["column"], t.params["depth"], t.params["seed"]))
        return out

    def tell(self, number: int, label: bool | None, seconds: float | None = None,
             fraction: float | None = None) -> None:
        t = self.running.pop(number)
        t.set_user_attr("seconds", seconds)
        t.set_user_attr("fraction", fraction)
        if label is None:
            self.study.tell(t, state=TrialState.FAIL)
        else:
            self.study.tell(t, float(bool(label)))

    # ------------------------------------------------------------------ the model
    def _trials(self):
        return self.study.get_trials(deepcopy=False)

    def _observations(self, exclude: int | None = None):
        """Per column: labels [(depth, label)], pending depths, and the (depth, seed) pairs already used."""
        obs = [[] for _ in range(self.n)]
        pending = [[] for _ in range(self.n)]
        used = [set() for _ in range(self.n)]
        for t in self._trials():
            if t.number == exclude or not t.params:
                continue
            c, d, s = t.params["column"], t.params["depth"], t.params["seed"]
            used[c].add((d, s))
            if t.state == TrialState.COMPLETE:
                obs[c].append((d, t.value > 0.5))
            elif t.state == TrialState.RUNNING:
                pending[c].append(d)
        return obs, pending, used

    def posteriors(self, exclude: int | None = None, believe_pending: bool = False) -> list[np.ndarray]:
        obs, pending, _ = self._observations(exclude)
        out = []
        for c in range(self.n):
            post = self.model.posterior(self.log_prior[c], obs[c])
            if believe_pending:
                for d in pending[c]:  # kriging believer: a point in flight returns its more likely label
                    y = float(self.model.p1[d - self.model.dmin] @ post) >= 0.5
                    post = self.model.posterior(np.log(np.maximum(post, 1e-300)), [(d, y)])
            out.append(post)
        return out

    def estimates(self) -> list[dict]:
        """Per column: median L, the 80% credible interval (lo, hi), the mass within ±resolution, resolved."""
        out = []
        for post in self.posteriors():
            s = self.model.summary(post, self.resolution)
            out.append(s)
        obs, _, _ = self._observations()
        for s, o in zip(out, obs):
            s["labels"] = len(o)
            s["resolved"] = self._resolved(s["mass"], len(o))
        return out

    def _resolved(self, mass: float, n_labels: int) -> bool:
        # the probe predicts, training verifies: a column is never settled by its prior alone
        return n_labels >= 1 and mass >= self.confidence

    def used(self) -> int:
        return len(self._trials())

    def costs(self) -> CostModel:
        """The cost model fitted to every finished trial that recorded its seconds (a trainable one against its
        column's posterior median boundary)."""
        m, medians, posts = CostModel(), {}, None
        for t in self._trials():
            if t.state == TrialState.COMPLETE and t.params and t.user_attrs.get("seconds") is not None:
                c, d = t.params["column"], t.params["depth"]
                if t.value > 0.5 and c not in medians:
                    posts = posts or self.posteriors()
                    medians[c] = self.model.summary(posts[c], self.resolution)["median"]
                m.add(self.archs[c], d, t.user_attrs.get("seconds"), t.user_attrs.get("fraction"), t.value > 0.5,
                      d / max(medians[c], 1.0) if t.value > 0.5 else None)
        return m

    def seconds(self) -> float:
        """Training seconds of every finished trial that recorded them."""
        return float(sum(t.user_attrs.get("seconds") or 0.0 for t in self._trials()))

    def finished(self) -> bool:
        return self.used() >= self.budget or self.choose() is None

    def choose(self, exclude: int | None = None):
        """The next (column, depth, seed): the most informative untried depth of any unresolved column."""
        if self.used() - (exclude is not None) >= self.budget:
            return None
        obs, pending, used = self._observations(exclude)
        costs = self.costs() if self.cost_power else None
        best, best_score = None, 0.0
        for c, post in enumerate(self.posteriors(exclude, believe_pending=True)):
            mass = self.model.summary(post, self.resolution)["mass"]
            if self._resolved(mass, len(obs[c]) + len(pending[c])):
                continue
            # weighted by how unsettled the column is: the budget goes to the columns furthest from resolved
            score = self.acquisition(c, post, costs) * (1 - mass)
            for i in np.argsort(-score, kind="stable"):
                if score[i] <= best_score * (1 + 1e-9) + 1e-15:
                    break
                d = int(self.model.depths[i])
                seed = next((s for s in self.seeds if (d, s) not in used[c]), None)
                if seed is not None:
                    best, best_score = (c, d, seed), float(score[i])
                    break
        return best

    def acquisition(self, column: int, post: np.ndarray, costs: CostModel | None) -> np.ndarray:
        """Per depth: the expected information about L of one more label, per expected second to the power
        `cost_power` (costs None: per training)."""
        gain = self.model.gain(post)
        if costs is None:
            return gain
        sec = costs.expected(self.archs[column], self.model.depths, self.model.p1, post, self.model.L)
        return gain / sec ** self.cost_power


# ----------------------------------------------------------------------------- a sweep's points
def label(status: str | None, reached) -> bool | None:
    """The search's label of a finished training: trained or not; a diverged network is untrainable
    (data, SCIENCE §7); a science error gives no label."""
    if status == "ok":
        return bool(reached)
    if status == "diverged":
        return False
    return None


def probe_priors(spec, probes) -> list[Prior | None]:
    """Per column of `spec.boundary_columns()`: the probes' predicted L* (median over seeds of the deepest
    probe's cutoff, in units of depth, as the analysis reads it; censored when the probe saw no plateau),
    None without an ok probe."""
    cols = spec.boundary_columns()
    keys = list(cols[0]) if cols else []
    found: dict[tuple, dict] = {}
    if probes is not None and len(probes):
        from reconent.science.entropy import depth_cutoff  # the analysis's reading too: depth units, censoring

        from ..columns import point_id

        ids = {point_id(p) for p in spec.points() if p["kind"] == "probe"}
        ok = probes[probes["point_id"].isin(ids) & probes["status"].eq("ok")]  # diverged: no prediction
        for _, r in ok.sort_values("depth").iterrows():  # the deepest per seed wins
            c = depth_cutoff(r["relative_entropy_norm_median"], float(r["rtol"]), int(r["depth"]))
            found.setdefault(tuple(r[k] if r[k] == r[k] else None for k in keys), {})[r["seed"]] = \
                {"cutoff": c.cutoff, "censored": c.censored, "depth": r["depth"]}
    out = []
    for col in cols:
        rows = found.get(tuple(col[k] for k in keys), {}).values()
        if not rows:
            out.append(None)
            continue
        cut = float(np.median([r["cutoff"] for r in rows]))
        censored = bool(np.median([r["censored"] for r in rows]) >= 0.5)
        out.append(Prior(max(cut, float(max(r["depth"] for r in rows))) if censored else cut, censored))
    return out


def _num(v) -> float | None:
    return None if v is None or v != v else float(v)


def _fraction(run, budget) -> float | None:
    """The fraction of its epoch budget a training ran (None when unknown)."""
    run, budget = _num(run), _num(budget)
    return None if run is None or not budget else run / budget


class BoundaryStrategy:
    """The boundary search over a spec's training points, rebuilt from the store on every start."""
    name = "boundary"

    def __init__(self, spec, store, retry_errors: bool = False):
        """`retry_errors` (`sweep run --retry-errors`): stored 'error' rows are not results the search knows, so
        their points can be proposed, and computed, again."""
        from ..columns import point_id

        b = spec.boundary
        self.spec, self.cols, self.seeds = spec, spec.boundary_columns(), spec.axes()["seed"]
        self.priors = probe_priors(spec, store.read("probe") if "probe" in store.kinds() else None)
        self.search = BoundarySearch(len(self.cols), b.depth.min, b.depth.max, b.budget, b.resolution,
                                     self.priors, self.seeds, b.noise, b.confidence,
                                     archs=[c.get("arch") for c in self.cols])
        self.where: dict[str, tuple] = {}  # point_id -> (column, depth, seed) of every candidate
        for c, col in enumerate(self.cols):
            for d in range(b.depth.min, b.depth.max + 1):
                for s in self.seeds:
                    self.where[point_id(self.point(c, d, s))] = (c, d, s)
        rows = store.read("train") if "train" in store.kinds() else None
        stored = []
        if rows is not None and len(rows):
            rows = rows[rows["point_id"].isin(self.where.keys())]
            if retry_errors:
                rows = rows[~rows["status"].eq("error")]
            stored = sorted((self.where[r.point_id], label(r.status, r.reached), _num(r.seconds),
                             _fraction(r.epochs_run, r.epochs)) for r in rows.itertuples())
        for (c, d, s), y, sec, frac in stored:  # canonical order: the same parts give the same study
            self.search.add(c, d, s, y, sec, frac)
        self.stored = len(stored)
        self.numbers: dict[str, int] = {}  # point_id -> Optuna trial number, for the points in flight
        self.proposed: list[dict] = []  # every point handed out by this driver

    def point(self, column: int, depth: int, seed) -> dict:
        return self.spec.train_point({**self.cols[column], "depth": int(depth), "seed": seed})

    def propose(self, k: int) -> list[dict]:
        from ..columns import point_id

        out = []
        for number, c, d, s in self.search.ask(k):
            p = self.point(c, d, s)
            self.numbers[point_id(p)] = number
            out.append(p)
        self.proposed += out
        return out

    def observe(self, point: dict, result: dict | None) -> None:
        from ..columns import point_id

        number = self.numbers.pop(point_id(point), None)
        if number is not None:
            if result is None:
                self.search.tell(number, None)
            else:
                self.search.tell(number, label(result.get("status"), result.get("reached")),
                                 _num(result.get("compute_seconds")), _fraction(result.get("epochs_run"), point["epochs"]))

    def finished(self) -> bool:
        return self.search.finished()

    def summary(self) -> list[dict]:
        """Per column: its coordinates, the prior, the trainings and the posterior (median, 80% interval)."""
        out = []
        for col, prior, est in zip(self.cols, self.priors, self.search.estimates()):
            out.append({**col, "prior": None if prior is None else prior.depth, **est})
        return out
