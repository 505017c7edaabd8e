#!/usr/bin/python3
"""Kiln's HPO engine against Optuna 3.1 (issues 5 and 18, "the best tuner by default").

  nice -n 19 /usr/bin/python3 bench/hpo_bench.py [--build build] [--seeds 10] [--jobs 2] [--quick] [--no-record]
      [--seed-start N] [--workloads SUBSTR,...] [--engines ...] [--parts efficiency,cost,parallel,earlystop]
      [--gp JSON] [--tpe JSON]

Needs Debian's python3-optuna (3.1) and python3-sklearn, and the driver
(cmake --build build --target kiln_hpo_bench). Measures, in one run:

  * sample efficiency: median over seeds of the best value after 50, 100 and 200
    trials on 14 workloads (WORKLOADS): analytic (Branin, Hartmann6, Rosenbrock),
    multimodal (Ackley, Levy, Rastrigin, Styblinski-Tang), noisy (the true value of
    the best observed trial), mixed spaces (log floats, integers and categoricals
    with interactions) and three scikit-learn models cross-validated on data sets
    scikit-learn ships. Kiln's proposals come from its C++ engine
    (build/bench/kiln_hpo_bench, a line protocol over stdin/stdout: it prints a
    configuration, this script evaluates it and writes the value back); Optuna's
    from TPESampler with default settings. All engines are evaluated by the same
    Python functions, with the same seeds and noise;
  * parallel proposals: the spread of 16 proposals made while all 16 run;
  * sampler cost: seconds per proposal with 200 and 1,000 completed trials in the
    study (random configurations and values) in a 6-D continuous and a mixed space;
  * early stopping (Kiln only): trial-epochs until the best final value of 100
    trials run without stopping is reached with the median rule and with
    Hyperband, over the same stream of random configurations on synthetic
    learning curves (computed in the driver).

Appends a section to bench/RESULTS.md with the machine it ran on (a run with the
default seeds and every workload; tuning runs record nothing).
"""
import argparse, json, math, multiprocessing, os, random, statistics, subprocess, sys, time, warnings

from benchlib import ROOT, heading, machine, report

CHECKPOINTS = (50, 100, 200)


# ---- workloads: a search space (the driver's JSON form) and an objective to minimise ----

def branin(c):
    x1, x2 = c["x1"], c["x2"]
    a = x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6
    return a * a + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


HARTMANN_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
HARTMANN_P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
              [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
HARTMANN_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(c):
    x = [c["x%d" % i] for i in range(6)]
    return -sum(HARTMANN_ALPHA[i] * math.exp(-sum(HARTMANN_A[i][j] * (x[j] - HARTMANN_P[i][j]) ** 2 for j in range(6)))
                for i in range(4))


def rosenbrock5(c):
    x = [c["x%d" % i] for i in range(5)]
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(4))


def floats(names, lo, hi):
    return [{"name": n, "type": "float", "min": lo, "max": hi} for n in names]


# Multimodal test functions (Surjanovic & Bingham's library of test functions), 6-D.

def ackley(c):
    x = [c["x%d" % i] for i in range(6)]
    d = len(x)
    return (-20 * math.exp(-0.2 * math.sqrt(sum(v * v for v in x) / d)) - math.exp(sum(math.cos(2 * math.pi * v)
                                                                                      for v in x) / d) + 20 + math.e)


def levy(c):
    w = [1 + (c["x%d" % i] - 1) / 4 for i in range(6)]
    s = math.sin(math.pi * w[0]) ** 2 + (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
    return s + sum((v - 1) ** 2 * (1 + 10 * math.sin(math.pi * v + 1) ** 2) for v in w[:-1])


def rastrigin(c):
    x = [c["x%d" % i] for i in range(6)]
    return 10 * len(x) + sum(v * v - 10 * math.cos(2 * math.pi * v) for v in x)


def styblinski_tang(c):
    return sum(v ** 4 - 16 * v * v + 5 * v for v in (c["x%d" % i] for i in range(6))) / 2


def noisy(fn, sd):
    """fn plus Gaussian noise: returns (observed, true). The n-th evaluation's noise
    comes from a generator seeded with the study's seed, so every engine sees the
    same noise sequence."""
    def f(c, rng):
        v = fn(c)
        return v + rng.gauss(0, sd), v
    f.noisy = True
    return f


# Mixed spaces: log-scaled floats, integers and categoricals with interactions.

MLP_OPT = {"sgd": (-1.0, 0.12, -3.0), "momentum": (-1.7, 0.04, -3.0), "adam": (-3.0, 0.0, -4.0),
           "rmsprop": (-3.3, 0.02, -4.0)}  # best log10 lr, offset, best log10 weight decay
MLP_ACT = {"relu": (4, 0.0), "tanh": (2, 0.05), "gelu": (5, -0.01)}  # best depth, offset


def mlp_surface(c):
    """A synthetic validation loss shaped like a network's: the best learning rate
    depends on the optimiser and falls with depth, the best depth on the
    activation, the best width on the depth, the best dropout on the width, with
    ripples along the learning rate (minimum 0.19)."""
    best_lr, off_opt, best_wd = MLP_OPT[c["optimizer"]]
    best_depth, off_act = MLP_ACT[c["activation"]]
    layers, lw = int(c["layers"]), math.log2(c["width"])
    dlr = math.log10(c["lr"]) - (best_lr - 0.15 * (layers - 1))
    return (0.2 + off_opt + off_act + 0.08 * dlr * dlr + 0.02 * (1 - math.cos(2 * math.pi * dlr)) +
            0.02 * (math.log10(c["weight_decay"]) - best_wd) ** 2 + 0.01 * (layers - best_depth) ** 2 +
            0.015 * (lw - (5 + 0.6 * layers)) ** 2 + 0.5 * (c["dropout"] - (0.1 + 0.06 * (lw - 4))) ** 2)


def hartmann6_mixed(c):
    """Hartmann6 with x3 an integer grid (0..20 / 20), x4 a category of 5 levels and
    x5 a log-scaled float."""
    return hartmann6({"x0": c["x0"], "x1": c["x1"], "x2": c["x2"], "x3": c["k3"] / 20.0, "x4": float(c["c4"]),
                      "x5": c["x5"]})


_DATA = {}


def dataset(name):
    if name not in _DATA:
        from sklearn import datasets
        if name == "digits":
            X, y = datasets.load_digits(return_X_y=True)
            _DATA[name] = (X[:600] / 16.0, y[:600])
        else:
            _DATA[name] = datasets.load_diabetes(return_X_y=True)
    return _DATA[name]


def cv3():
    from sklearn.model_selection import KFold
    return KFold(n_splits=3, shuffle=True, random_state=0)


def gbr_diabetes(c):
    """3-fold cross-validated MSE of a gradient-boosting regressor on sklearn's diabetes data."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.model_selection import cross_val_score
    X, y = dataset("diabetes")
    model = GradientBoostingRegressor(
        n_estimators=int(c["n_estimators"]), learning_rate=c["learning_rate"], max_depth=int(c["max_depth"]),
        subsample=c["subsample"], min_samples_leaf=int(c["min_samples_leaf"]), max_features=c["max_features"],
        criterion=c["criterion"], random_state=0)
    return -cross_val_score(model, X, y, cv=cv3(), scoring="neg_mean_squared_error").mean()


def svc_digits(c):
    """3-fold cross-validated error rate of a support vector classifier on 600 of sklearn's digits."""
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import SVC
    X, y = dataset("digits")
    model = SVC(C=c["C"], gamma=c["gamma"], kernel=c["kernel"], degree=int(c["degree"]), coef0=c["coef0"])
    return 1 - cross_val_score(model, X, y, cv=cv3()).mean()


def kernel_ridge_diabetes(c):
    """3-fold cross-validated MSE of kernel ridge regression on sklearn's diabetes data."""
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import cross_val_score
    X, y = dataset("diabetes")
    model = KernelRidge(alpha=c["alpha"], kernel=c["kernel"], gamma=c["gamma"], degree=int(c["degree"]),
                        coef0=c["coef0"])
    return -cross_val_score(model, X, y, cv=cv3(), scoring="neg_mean_squared_error").mean()


SIX = ["x%d" % i for i in range(6)]
# name -> (space, objective, note, family). A noisy objective takes (config, rng) and
# returns (observed, true); the bench reports the true value of the best observed.
WORKLOADS = {
    "Branin": (floats(["x1"], -5.0, 10.0) + floats(["x2"], 0.0, 15.0), branin, "minimum 0.397887", "analytic"),
    "Hartmann6": (floats(SIX, 0.0, 1.0), hartmann6, "minimum -3.32237", "analytic"),
    "Rosenbrock (5-D)": (floats(SIX[:5], -5.0, 10.0), rosenbrock5, "minimum 0", "analytic"),
    "Ackley (6-D)": (floats(SIX, -32.768, 32.768), ackley, "minimum 0", "multimodal"),
    "Levy (6-D)": (floats(SIX, -10.0, 10.0), levy, "minimum 0", "multimodal"),
    "Rastrigin (6-D)": (floats(SIX, -5.12, 5.12), rastrigin, "minimum 0", "multimodal"),
    "Styblinski-Tang (6-D)": (floats(SIX, -5.0, 5.0), styblinski_tang, "minimum -234.99", "multimodal"),
    "Hartmann6, noisy": (floats(SIX, 0.0, 1.0), noisy(hartmann6, 0.1),
                         "noise sd 0.1; true value of the best observed", "noisy"),
    "Branin, noisy": (floats(["x1"], -5.0, 10.0) + floats(["x2"], 0.0, 15.0), noisy(branin, 2.0),
                      "noise sd 2; true value of the best observed", "noisy"),
    "MLP-shaped surface": ([
        {"name": "lr", "type": "float", "min": 1e-5, "max": 1.0, "scaling": "log"},
        {"name": "weight_decay", "type": "float", "min": 1e-7, "max": 1e-1, "scaling": "log"},
        {"name": "layers", "type": "int", "min": 1, "max": 8},
        {"name": "width", "type": "int", "min": 16, "max": 1024, "scaling": "log"},
        {"name": "optimizer", "type": "cat", "values": list(MLP_OPT)},
        {"name": "activation", "type": "cat", "values": list(MLP_ACT)},
        {"name": "dropout", "type": "float", "min": 0.0, "max": 0.8},
    ], mlp_surface, "2 log floats, 2 ints, 2 categoricals, 1 float; minimum 0.19", "mixed"),
    "Hartmann6, mixed": (floats(["x0", "x1", "x2"], 0.0, 1.0) + [
        {"name": "k3", "type": "int", "min": 0, "max": 20},
        {"name": "c4", "type": "cat", "values": ["0.1", "0.3", "0.5", "0.7", "0.9"]},
        {"name": "x5", "type": "float", "min": 0.01, "max": 1.0, "scaling": "log"},
    ], hartmann6_mixed, "3 floats, 1 int, 1 categorical, 1 log float", "mixed"),
    "GBR on diabetes (CV MSE)": ([
        {"name": "n_estimators", "type": "int", "min": 10, "max": 60},
        {"name": "learning_rate", "type": "float", "min": 0.01, "max": 0.5, "scaling": "log"},
        {"name": "max_depth", "type": "int", "min": 1, "max": 4},
        {"name": "subsample", "type": "float", "min": 0.4, "max": 1.0},
        {"name": "min_samples_leaf", "type": "int", "min": 1, "max": 40, "scaling": "log"},
        {"name": "max_features", "type": "float", "min": 0.2, "max": 1.0},
        {"name": "criterion", "type": "cat", "values": ["friedman_mse", "squared_error"]},
    ], gbr_diabetes, "6 numeric + 1 categorical, 3-fold CV", "scikit-learn"),
    "SVC on digits (CV error)": ([
        {"name": "C", "type": "float", "min": 1e-2, "max": 1e3, "scaling": "log"},
        {"name": "gamma", "type": "float", "min": 1e-5, "max": 1.0, "scaling": "log"},
        {"name": "kernel", "type": "cat", "values": ["rbf", "poly", "sigmoid"]},
        {"name": "degree", "type": "int", "min": 2, "max": 5},
        {"name": "coef0", "type": "float", "min": 0.0, "max": 1.0},
    ], svc_digits, "2 log floats, 1 categorical, 1 int, 1 float; 600 digits, 3-fold CV", "scikit-learn"),
    "Kernel ridge on diabetes (CV MSE)": ([
        {"name": "alpha", "type": "float", "min": 1e-4, "max": 10.0, "scaling": "log"},
        {"name": "gamma", "type": "float", "min": 1e-3, "max": 10.0, "scaling": "log"},
        {"name": "kernel", "type": "cat", "values": ["rbf", "laplacian", "polynomial"]},
        {"name": "degree", "type": "int", "min": 1, "max": 4},
        {"name": "coef0", "type": "float", "min": 0.0, "max": 5.0},
    ], kernel_ridge_diabetes, "2 log floats, 1 categorical, 1 int, 1 float; 3-fold CV", "scikit-learn"),
}
SLOW = ("GBR", "SVC", "Kernel")  # scikit-learn workloads: started first


# ---- the two engines: each returns the objective of every trial in order ----

class KilnStudy:
    """One study in Kiln's C++ engine (the driver process)."""

    def __init__(self, build, space, seed, sampler="tpe", options=None):
        self.proc = subprocess.Popen([os.path.join(build, "bench", "kiln_hpo_bench"), "study"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        options = options or {}
        self.send(json.dumps({"space": space, "sampler": sampler, "seed": seed, "tpe": options.get("tpe", {}),
                              "gp": options.get("gp", {})}))

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def call(self, line):
        self.send(line)
        out = self.proc.stdout.readline()
        if not out:
            raise RuntimeError("kiln_hpo_bench exited (%s)" % self.proc.wait())
        return json.loads(out)

    def ask(self):
        return self.call("ask")["config"]

    def tell(self, value):
        self.send("tell %r" % float(value))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def evaluate(fn, c, rng):
    """(observed, true) value of configuration c."""
    return fn(c, rng) if getattr(fn, "noisy", False) else (fn(c),) * 2


def run_kiln(build, workload, seed, trials, sampler, options=None):
    space, fn, _, _ = WORKLOADS[workload]
    study = KilnStudy(build, space, seed, sampler, options)
    rng = random.Random(seed)
    values = []
    for _ in range(trials):
        v = evaluate(fn, study.ask(), rng)
        study.tell(v[0])
        values.append(v)
    study.close()
    return values


def optuna_suggest(trial, space):
    c = {}
    for p in space:
        if p["type"] == "cat":
            c[p["name"]] = trial.suggest_categorical(p["name"], p["values"])
        elif p["type"] == "int":
            c[p["name"]] = trial.suggest_int(p["name"], p["min"], p["max"], log=p.get("scaling") == "log")
        else:
            c[p["name"]] = trial.suggest_float(p["name"], p["min"], p["max"], log=p.get("scaling") == "log")
    return c


def quiet_optuna():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def run_optuna(workload, seed, trials):
    optuna = quiet_optuna()
    space, fn, _, _ = WORKLOADS[workload]
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    rng = random.Random(seed)
    values = []
    for _ in range(trials):
        t = study.ask()
        v = evaluate(fn, optuna_suggest(t, space), rng)
        study.tell(t, v[0])
        values.append(v)
    return values


def best_after(values):
    """After n trials: the true value of the best observed one (the same as the best
    value for an objective without noise)."""
    out = {}
    for n in CHECKPOINTS:
        if n <= len(values):
            out[n] = min(values[:n], key=lambda v: v[0])[1]
    return out


# Engine name -> the driver's sampler (None: Optuna). "Kiln Bayesian" is the
# tuning spec's default; TPE and GP the `algorithm:` choices.
ENGINES = {"Kiln Bayesian": "bayesian", "Kiln TPE": "tpe", "Kiln GP": "gp-option", "Optuna TPE": None}
PEER = "Optuna TPE"


def one_run(args):
    engine, workload, seed, trials, build, options = args
    t0 = time.time()
    sampler = ENGINES[engine]
    values = run_optuna(workload, seed, trials) if sampler is None else run_kiln(build, workload, seed, trials,
                                                                                  sampler, options)
    return engine, workload, seed, best_after(values), time.time() - t0


def sample_efficiency(build, seeds, trials, jobs, workloads, engines, options=None):
    tasks = [(e, w, s, trials, build, options) for w in workloads for s in seeds for e in engines]
    # The slow (scikit-learn) runs first, so the pool does not end on one long task.
    tasks.sort(key=lambda t: not t[1].startswith(SLOW))
    results = {}
    seconds = {}
    with multiprocessing.Pool(jobs) as pool:
        for i, (engine, workload, seed, best, secs) in enumerate(pool.imap_unordered(one_run, tasks), 1):
            results.setdefault((engine, workload), []).append(dict(best, seed=seed))
            seconds[(engine, workload)] = seconds.get((engine, workload), 0) + secs
            print("  [%d/%d] %s %s seed %d: %s (%.1f s)" % (i, len(tasks), engine, workload, seed,
                                                            " ".join("%g" % best[n] for n in sorted(best)), secs),
                  flush=True)
    return results, seconds


def median_diff_ci(kiln, optuna, reps=10000, level=0.95):
    """Bootstrap interval of median(kiln) - median(optuna): seeds resampled with
    replacement, each engine on its own (one engine's seed s has nothing to do with
    the other's), a fixed generator so a rerun gives the same interval."""
    import random
    rng = random.Random(12345)
    diffs = sorted(statistics.median(rng.choices(kiln, k=len(kiln))) -
                   statistics.median(rng.choices(optuna, k=len(optuna))) for _ in range(reps))
    lo = diffs[int((1 - level) / 2 * reps)]
    hi = diffs[min(reps - 1, int((1 + level) / 2 * reps))]
    return lo, hi


# ---- sampler cost ----

COST_SPACES = {
    "6 continuous": floats(["x%d" % i for i in range(6)], 0.0, 1.0),
    "MLP-shaped space (mixed, 7)": WORKLOADS["MLP-shaped surface"][0],
}


def optuna_cost(space, history, reps):
    optuna = quiet_optuna()
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    dists = {}
    for p in space:
        if p["type"] == "cat":
            dists[p["name"]] = CategoricalDistribution(p["values"])
        elif p["type"] == "int":
            dists[p["name"]] = IntDistribution(p["min"], p["max"], log=p.get("scaling") == "log")
        else:
            dists[p["name"]] = FloatDistribution(p["min"], p["max"], log=p.get("scaling") == "log")
    rng = random.Random(1)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    trials = []
    for _ in range(history):
        params = {}
        for name, d in dists.items():
            if isinstance(d, CategoricalDistribution):
                params[name] = rng.choice(d.choices)
            elif isinstance(d, IntDistribution):
                params[name] = rng.randint(d.low, d.high)
            else:
                params[name] = rng.uniform(d.low, d.high)
        trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=rng.random()))
    study.add_trials(trials)
    secs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        t = study.ask()
        optuna_suggest(t, space)
        secs.append(time.perf_counter() - t0)
        study.tell(t, rng.random())
    return statistics.median(secs)


def kiln_cost(build, space, history, reps, sampler="tpe"):
    study = KilnStudy(build, space, 1, sampler)
    study.call("fill %d" % history)
    out = study.call("time %d" % reps)
    study.close()
    return out["median_s"]


# ---- parallel proposals ----

def unit_coords(space, c):
    """Each parameter of configuration c in [0, 1] (log-scaled where the space is),
    a category as its name."""
    out = []
    for p in space:
        v = c[p["name"]]
        if p["type"] == "cat":
            out.append(v)
        elif p.get("scaling") == "log":
            out.append((math.log(v) - math.log(p["min"])) / (math.log(p["max"]) - math.log(p["min"])))
        else:
            out.append((v - p["min"]) / (p["max"] - p["min"]))
    return out


def spread(space, configs):
    """Over all pairs: the smallest distance (Euclidean over the numeric coordinates
    in [0, 1] plus 1 for each differing category, over sqrt(dims)), the pairs that
    are the same configuration, and the near-duplicates (every numeric coordinate
    within 0.01 and the same categories)."""
    pts = [unit_coords(space, c) for c in configs]
    least, same, near = float("inf"), 0, 0
    for i in range(len(pts)):
        for j in range(i):
            d2, close = 0.0, True
            for a, b in zip(pts[i], pts[j]):
                if isinstance(a, str):
                    d2 += a != b
                    close = close and a == b
                else:
                    d2 += (a - b) ** 2
                    close = close and abs(a - b) <= 0.01
            least = min(least, math.sqrt(d2 / len(space)))
            same += configs[i] == configs[j]
            near += close
    return least, same, near


def parallel_run(args):
    """One seed: `done` trials one after another, then `parallel` proposals while
    all of them run (no results yet), as a tuning job with max_parallel asks."""
    engine, workload, seed, done, parallel, build = args
    space, fn, _, _ = WORKLOADS[workload]
    rng = random.Random(seed)
    if ENGINES[engine] is None:
        optuna = quiet_optuna()
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        for _ in range(done):
            t = study.ask()
            study.tell(t, evaluate(fn, optuna_suggest(t, space), rng)[0])
        batch = [optuna_suggest(study.ask(), space) for _ in range(parallel)]
    else:
        study = KilnStudy(build, space, seed, ENGINES[engine])
        for _ in range(done):
            study.tell(evaluate(fn, study.ask(), rng)[0])
        batch = [study.ask() for _ in range(parallel)]
        study.close()
    return (engine, workload) + spread(space, batch)


def parallel_proposals(build, seeds, jobs, workloads, engines, done=50, parallel=16):
    tasks = [(e, w, s, done, parallel, build) for w in workloads for e in engines for s in seeds]
    out = {}
    with multiprocessing.Pool(jobs) as pool:
        for engine, workload, least, same, near in pool.imap_unordered(parallel_run, tasks):
            out.setdefault((engine, workload), []).append((least, same, near))
    return out


# ---- early stopping ----

def early_stopping(build, seeds, trials):
    out = subprocess.run([os.path.join(build, "bench", "kiln_hpo_bench"), "earlystop", "--seeds", str(seeds),
                          "--trials", str(trials), "--epochs", "81"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# ---- report ----

def fmt(v):
    if v == 0 or (1e-3 <= abs(v) < 1e5):
        return ("%.4f" % v) if abs(v) < 10 else ("%.2f" % v) if abs(v) < 1000 else ("%.1f" % v)
    return "%.3g" % v


def pick(names, wanted):
    """The names that contain one of the comma-separated substrings `wanted` (all if empty)."""
    if not wanted:
        return list(names)
    keys = [w.strip().lower() for w in wanted.split(",") if w.strip()]
    return [n for n in names if any(k in n.lower() for k in keys)]


def efficiency_section(results, workloads, engines, checkpoints, seeds):
    lines = ["| workload | family | engine | " + " | ".join("best after %d" % n for n in checkpoints) + " |",
             "|---|---|---|" + "---|" * len(checkpoints)]
    verdicts, tally = [], {}
    for w in workloads:
        _, _, note, family = WORKLOADS[w]
        med = {}
        for e in engines:
            runs = results[(e, w)]
            med[e] = [statistics.median(r[n] for r in runs) for n in checkpoints]
            lines.append("| %s (%s) | %s | %s | %s |" % (w, note, family, e, " | ".join(fmt(v) for v in med[e])))
        if PEER not in engines:
            continue
        row = []
        for e in [e for e in engines if e != PEER]:
            cells = []
            for i, n in enumerate(checkpoints):
                k, o = med[e][i], med[PEER][i]
                lo, hi = median_diff_ci([r[n] for r in results[(e, w)]], [r[n] for r in results[(PEER, w)]])
                word = "ahead" if k < o else "level" if k == o else "behind"
                beyond = hi < 0 or lo > 0
                t = tally.setdefault(e, {"ahead": 0, "level": 0, "behind": 0, "ahead beyond": 0,
                                         "behind beyond": 0})
                t[word] += 1
                if beyond:
                    t[word + " beyond"] += 1
                cells.append("%s%s (%s .. %s)" % (word, "*" if beyond else "", fmt(lo), fmt(hi)))
            row.append(", ".join(cells))
        verdicts.append((w, row))
    if verdicts:
        others = [e for e in engines if e != PEER]
        lines += ["", "Each engine against Optuna at %s trials: ahead or behind by the medians, and in brackets a 95%% "
                  "bootstrap interval of the difference of the medians (Kiln minus Optuna; below 0 is Kiln ahead). "
                  "A star marks an interval that excludes 0 (the seeds tell the two apart)."
                  % ", ".join(map(str, checkpoints)), "",
                  "| workload | " + " | ".join("%s vs Optuna" % e for e in others) + " |", "|---|" + "---|" * len(others)]
        lines += ["| %s | %s |" % (w, " | ".join(v)) for w, v in verdicts]
        lines += ["", "Tally over workloads and checkpoints (%d seeds):" % len(seeds), ""]
        for e, t in tally.items():
            lines.append("- %s: ahead %d (%d beyond the seeds' spread), level %d, behind %d (%d beyond the seeds' "
                         "spread)." % (e, t["ahead"], t["ahead beyond"], t["level"], t["behind"], t["behind beyond"]))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed-start", type=int, default=1, help="first seed (tuning runs use seeds past the reported)")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2, help="parallel studies")
    ap.add_argument("--workloads", default="", help="comma-separated substrings of workload names (default: all)")
    ap.add_argument("--engines", default="Kiln Bayesian,Kiln TPE,Optuna TPE",
                    help="comma-separated, of: " + ", ".join(ENGINES))
    ap.add_argument("--parts", default="efficiency,cost,parallel,earlystop")
    ap.add_argument("--tpe", default="", help="JSON TpeOptions for Kiln's engines (tuning experiments)")
    ap.add_argument("--gp", default="", help="JSON GpOptions for Kiln's engines (tuning experiments)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 seeds, 50 trials, fewer timing reps; no record")
    ap.add_argument("--no-record", action="store_true", help="print the section, do not append it to RESULTS.md")
    a = ap.parse_args()
    if a.quick:
        a.seeds, a.trials = 3, 50
    parts = set(a.parts.split(","))
    engines = [e.strip() for e in a.engines.split(",")]
    for e in engines:
        if e not in ENGINES:
            sys.exit("unknown engine %r (known: %s)" % (e, ", ".join(ENGINES)))
    workloads = pick(WORKLOADS, a.workloads)
    seeds = list(range(a.seed_start, a.seed_start + a.seeds))
    record = not (a.quick or a.no_record or a.workloads or a.seed_start != 1 or a.tpe or a.gp)
    options = {"tpe": json.loads(a.tpe or "{}"), "gp": json.loads(a.gp or "{}")}
    driver = os.path.join(a.build, "bench", "kiln_hpo_bench")
    if not os.path.exists(driver):
        sys.exit("%s missing: cmake --build %s --target kiln_hpo_bench" % (driver, a.build))
    optuna = quiet_optuna()
    import sklearn
    started = time.time()
    checkpoints = [n for n in CHECKPOINTS if n <= a.trials]
    lines = [heading("HPO engine vs Optuna"), "",
             "Machine: %s; Optuna %s, scikit-learn %s, Python %s. Seeds %d..%d, %d trials each, run under nice -n 19 "
             "with %d studies in parallel." % (
                 machine(), optuna.__version__, sklearn.__version__, sys.version.split()[0], seeds[0], seeds[-1],
                 a.trials, a.jobs), ""]

    if "efficiency" in parts:
        print("== sample efficiency: %d seeds x %d trials, %d workloads" % (len(seeds), a.trials, len(workloads)),
              flush=True)
        results, _ = sample_efficiency(a.build, seeds, a.trials, a.jobs, workloads, engines, options)
        lines += ["Median over seeds of the best value found after n trials (lower is better; for a noisy objective, "
                  "the noise-free value of the trial with the best observed value). Kiln Bayesian: the tuning spec's "
                  "default strategy; Kiln TPE: `algorithm: TPE`; both propose from Kiln's C++ engine. Optuna: "
                  "`TPESampler(seed=s)` with default settings. Same objective code, seeds and noise for all.", ""]
        lines += efficiency_section(results, workloads, engines, checkpoints, seeds)
        if record:
            # The per-seed values behind the medians, for reanalysis without a rerun.
            raw = {"%s | %s" % (e, w): sorted(({"seed": r["seed"], **{str(n): r[n] for n in checkpoints}}
                                               for r in runs), key=lambda r: r["seed"])
                   for (e, w), runs in results.items()}
            with open(os.path.join(ROOT, "bench", "hpo_raw.json"), "w") as f:
                json.dump(raw, f, indent=0, sort_keys=True)

    if "parallel" in parts:
        print("== parallel proposals", flush=True)
        pw = [w for w in pick(WORKLOADS, "Hartmann6,MLP") if "noisy" not in w]
        pe = [e for e in engines if e in ("Kiln Bayesian", "Kiln TPE", PEER)]
        par = parallel_proposals(a.build, seeds, a.jobs, pw, pe)
        lines += ["", "Parallel proposals: after 50 trials one after another, 16 proposals while all 16 run (a tuning "
                  "job with max_parallel 16). Per seed, over the 120 pairs: the smallest distance (numeric "
                  "coordinates scaled to [0, 1], log where the space is, plus 1 per differing category, over "
                  "sqrt(dims)), identical configurations, and near-duplicates (every numeric coordinate within 0.01 "
                  "and the same categories); medians and totals over %d seeds." % len(seeds), "",
                  "| workload | engine | median smallest distance | identical pairs | near-duplicate pairs |",
                  "|---|---|---|---|---|"]
        for w in pw:
            for e in pe:
                rows = par[(e, w)]
                lines.append("| %s | %s | %.3f | %d | %d |" % (w, e, statistics.median(r[0] for r in rows),
                                                                sum(r[1] for r in rows), sum(r[2] for r in rows)))

    if "cost" in parts:
        print("== sampler cost", flush=True)
        reps = 5 if a.quick else 20
        lines += ["", "Sampler cost: median seconds per proposal (Optuna: `ask` plus the `suggest_*` calls) with n "
                  "completed trials of random configurations and values in the study. Targets for the default "
                  "strategy: <= 50 ms at 200 trials, <= 5 ms at 1,000.", "",
                  "| space | trials | Kiln Bayesian | Kiln TPE | Optuna TPE | Optuna / Kiln Bayesian |",
                  "|---|---|---|---|---|---|"]
        for name, space in COST_SPACES.items():
            for history in ((200,) if a.quick else (200, 1000)):
                kb = kiln_cost(a.build, space, history, reps, "bayesian")
                kt = kiln_cost(a.build, space, history, 10 * reps, "tpe")
                op = optuna_cost(space, history, reps)
                print("  %s, %d: Kiln Bayesian %.2f ms, Kiln TPE %.3f ms, Optuna %.1f ms" % (
                    name, history, kb * 1e3, kt * 1e3, op * 1e3), flush=True)
                lines.append("| %s | %d | %.2f ms | %.3f ms | %.1f ms | %.0fx |" % (
                    name, history, kb * 1e3, kt * 1e3, op * 1e3, op / kb))

    if "earlystop" in parts:
        print("== early stopping", flush=True)
        es_trials = 100
        es = early_stopping(a.build, len(seeds), es_trials)
        none_epochs = es_trials * 81
        lines += ["", "Early stopping (Kiln): synthetic learning curves (loss = floor(theta) + scale(theta) * "
                  "epoch^-rate(theta) + N(0, 0.005), 81 epochs; a high learning rate converges fast to a worse loss), "
                  "random configurations, trials run one after another. No stopping runs %d trials to the end; the "
                  "median rule and Hyperband (eta 3, min 1 epoch, 4 brackets) run the same configuration stream until "
                  "one finished trial's final value is at least as good as no stopping's best (capped at no "
                  "stopping's budget). Medians over %d seeds." % (es_trials, len(seeds)), "",
                  "| stopping | trial-epochs to reach no stopping's best | share of no stopping's | seeds that reached "
                  "it | trials started | best final value with 1/3 of the epochs | best final value overall |",
                  "|---|---|---|---|---|---|---|",
                  "| none | %d | 1 | %d/%d | %d | %s | %s |" % (
                      none_epochs, len(seeds), len(seeds), es_trials, "-",
                      fmt(statistics.median(r["none"]["best"] for r in es)))]
        for k, label in (("median", "median rule"), ("hyperband", "Hyperband")):
            ep = statistics.median(r[k]["epochs"] for r in es)
            lines.append("| %s | %d | %.2f | %d/%d | %d | %s | %s |" % (
                label, ep, ep / none_epochs, sum(r[k]["reached"] for r in es), len(seeds),
                statistics.median(r[k]["trials"] for r in es),
                fmt(statistics.median(r[k]["best_at_third"] for r in es)),
                fmt(statistics.median(r[k]["best"] for r in es))))
    lines += ["", "Whole run %.0f s." % (time.time() - started), ""]
    report("\n".join(lines) + "\n", record)


if __name__ == "__main__":
    main()
