#!/usr/bin/python3
"""Kiln's HPO engine against Optuna 3.1 (issue 5, "ahead of Optuna").

  nice -n 19 /usr/bin/python3 bench/hpo_bench.py [--build build] [--seeds 20] [--jobs 2] [--quick] [--no-record]

Needs Debian's python3-optuna (3.1) and python3-sklearn, and the driver
(cmake --build build --target kiln_hpo_bench). Measures, in one run:

  * sample efficiency: median over seeds of the best value after 50, 100 and 200
    trials on Branin, Hartmann6, Rosenbrock (5-D) and the 3-fold cross-validated
    mean squared error of scikit-learn's GradientBoostingRegressor on the diabetes
    data set that ships with scikit-learn. Kiln's proposals come from its C++
    engine (build/bench/kiln_hpo_bench, a line protocol over stdin/stdout: it
    prints a configuration, this script evaluates it and writes the value back);
    Optuna's from TPESampler with default settings. Both are evaluated by the same
    Python functions, with the same seeds (each engine seeds its own generator);
  * sampler cost: seconds per proposal with 1,000 completed trials in the study
    (random configurations and values) in a 6-D continuous space and in the mixed
    scikit-learn space;
  * early stopping (Kiln only): trial-epochs until the best final value of 100
    trials run without stopping is reached with the median rule and with
    Hyperband, over the same stream of random configurations on synthetic
    learning curves (computed in the driver).

Appends a section to bench/RESULTS.md with the machine it ran on.
"""
import argparse, functools, json, math, multiprocessing, os, statistics, subprocess, sys, time, warnings

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


_DIABETES = None


def gbr_diabetes(c):
    """3-fold cross-validated MSE of a gradient-boosting regressor on sklearn's diabetes data."""
    global _DIABETES
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.model_selection import KFold, cross_val_score
    if _DIABETES is None:
        _DIABETES = load_diabetes(return_X_y=True)
    X, y = _DIABETES
    model = GradientBoostingRegressor(
        n_estimators=int(c["n_estimators"]), learning_rate=c["learning_rate"], max_depth=int(c["max_depth"]),
        subsample=c["subsample"], min_samples_leaf=int(c["min_samples_leaf"]), max_features=c["max_features"],
        criterion=c["criterion"], random_state=0)
    cv = KFold(n_splits=3, shuffle=True, random_state=0)
    return -cross_val_score(model, X, y, cv=cv, scoring="neg_mean_squared_error").mean()


def floats(names, lo, hi):
    return [{"name": n, "type": "float", "min": lo, "max": hi} for n in names]


WORKLOADS = {
    "Branin": (floats(["x1"], -5.0, 10.0) + floats(["x2"], 0.0, 15.0), branin, "minimum 0.397887"),
    "Hartmann6": (floats(["x%d" % i for i in range(6)], 0.0, 1.0), hartmann6, "minimum -3.32237"),
    "Rosenbrock (5-D)": (floats(["x%d" % i for i in range(5)], -5.0, 10.0), rosenbrock5, "minimum 0"),
    "GBR on diabetes (CV MSE)": ([
        {"name": "n_estimators", "type": "int", "min": 10, "max": 60},
        {"name": "learning_rate", "type": "float", "min": 0.01, "max": 0.5, "scaling": "log"},
        {"name": "max_depth", "type": "int", "min": 1, "max": 4},
        {"name": "subsample", "type": "float", "min": 0.4, "max": 1.0},
        {"name": "min_samples_leaf", "type": "int", "min": 1, "max": 40, "scaling": "log"},
        {"name": "max_features", "type": "float", "min": 0.2, "max": 1.0},
        {"name": "criterion", "type": "cat", "values": ["friedman_mse", "squared_error"]},
    ], gbr_diabetes, "6 numeric + 1 categorical, 3-fold CV"),
}


# ---- the two engines: each returns the objective of every trial in order ----

class KilnStudy:
    """One study in Kiln's C++ engine (the driver process)."""

    def __init__(self, build, space, seed, sampler="tpe", tpe=None):
        self.proc = subprocess.Popen([os.path.join(build, "bench", "kiln_hpo_bench"), "study"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.send(json.dumps({"space": space, "sampler": sampler, "seed": seed, "tpe": tpe or {}}))

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


def run_kiln(build, workload, seed, trials, tpe=None, sampler="tpe"):
    space, fn, _ = WORKLOADS[workload]
    study = KilnStudy(build, space, seed, sampler, tpe)
    values = []
    for _ in range(trials):
        v = fn(study.ask())
        study.tell(v)
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
    space, fn, _ = WORKLOADS[workload]
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    values = []
    for _ in range(trials):
        t = study.ask()
        v = fn(optuna_suggest(t, space))
        study.tell(t, v)
        values.append(v)
    return values


def best_after(values):
    return {n: min(values[:n]) for n in CHECKPOINTS if n <= len(values)}


ENGINES = ("Kiln TPE", "Kiln GP", "Optuna TPE")


def one_run(args):
    engine, workload, seed, trials, build = args
    t0 = time.time()
    if engine == "Kiln TPE":
        values = run_kiln(build, workload, seed, trials)
    elif engine == "Kiln GP":  # tuning spec `algorithm: GP`: the GP up to 200 trials with results, TPE after
        values = run_kiln(build, workload, seed, trials, sampler="bayesian")
    else:
        values = run_optuna(workload, seed, trials)
    return engine, workload, seed, best_after(values), time.time() - t0


def sample_efficiency(build, seeds, trials, jobs, workloads):
    tasks = [(e, w, s, trials, build) for w in workloads for s in range(1, seeds + 1) for e in ENGINES]
    # The slow (scikit-learn) runs first, so the pool does not end on one long task.
    tasks.sort(key=lambda t: not t[1].startswith("GBR"))
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
    "GBR space (mixed, 7)": WORKLOADS["GBR on diabetes (CV MSE)"][0],
}


def optuna_cost(space, history, reps):
    import random
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2, help="parallel studies in the sample-efficiency part")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 seeds, 50 trials, fewer timing reps; no record")
    ap.add_argument("--no-record", action="store_true", help="print the section, do not append it to RESULTS.md")
    a = ap.parse_args()
    if a.quick:
        a.seeds, a.trials = 3, 50
    record = not (a.quick or a.no_record)
    driver = os.path.join(a.build, "bench", "kiln_hpo_bench")
    if not os.path.exists(driver):
        sys.exit("%s missing: cmake --build %s --target kiln_hpo_bench" % (driver, a.build))
    optuna = quiet_optuna()
    import sklearn
    started = time.time()

    print("== sample efficiency: %d seeds x %d trials" % (a.seeds, a.trials), flush=True)
    results, seconds = sample_efficiency(a.build, a.seeds, a.trials, a.jobs, list(WORKLOADS))

    print("== sampler cost (1000 completed trials)", flush=True)
    history = 200 if a.quick else 1000
    cost, gp_cost = {}, {}
    for name, space in COST_SPACES.items():
        cost[name] = (kiln_cost(a.build, space, history, 20 if a.quick else 200),
                      optuna_cost(space, history, 5 if a.quick else 20))
        # The GP option at its largest model (200 trials with results; TPE takes over after).
        gp_cost[name] = kiln_cost(a.build, space, 200, 5 if a.quick else 20, sampler="bayesian")
        print("  %s: Kiln %.1f us, Optuna %.1f ms; Kiln GP at 200 trials %.1f ms" % (
            name, cost[name][0] * 1e6, cost[name][1] * 1e3, gp_cost[name] * 1e3), flush=True)

    print("== early stopping", flush=True)
    es_trials = 100
    es = early_stopping(a.build, a.seeds, es_trials)
    elapsed = time.time() - started

    # -- the section --
    checkpoints = [n for n in CHECKPOINTS if n <= a.trials]
    lines = [heading("HPO engine vs Optuna"), "",
             "Machine: %s; Optuna %s, scikit-learn %s, Python %s. %d seeds, %d trials each, run under nice -n 19 "
             "with %d studies in parallel; whole run %.0f s." % (
                 machine(), optuna.__version__, sklearn.__version__, sys.version.split()[0], a.seeds, a.trials,
                 a.jobs, elapsed),
             "",
             "Median over seeds of the best value found after n trials (lower is better). Kiln TPE: the "
             "Bayesian strategy's default, with the defaults of `TpeOptions` (a joint density over the continuous "
             "parameters, one per integer or categorical parameter, 48 candidates, gamma 0.2); Kiln GP: the tuning "
             "spec's `algorithm: GP` (`MakeBayesianSampler`: a Gaussian process with expected improvement while at "
             "most 200 trials have results, so all of these); both propose from Kiln's C++ engine. Optuna: "
             "`TPESampler(seed=s)` with default settings. Same objective code and seeds 1..%d for all. Kiln's "
             "defaults were chosen on other seeds (21..140 for the analytic functions, 21..60 for scikit-learn), "
             "so these seeds did not tune them." % a.seeds, "",
             "| workload | engine | " + " | ".join("best after %d" % n for n in checkpoints) + " |",
             "|---|---|" + "---|" * len(checkpoints)]
    verdicts = []
    for w, (_, _, note) in WORKLOADS.items():
        med = {}
        for e in ENGINES:
            runs = results[(e, w)]
            med[e] = [statistics.median(r[n] for r in runs) for n in checkpoints]
            lines.append("| %s (%s) | %s | %s |" % (w, note, e, " | ".join(fmt(v) for v in med[e])))
        row = []
        for e in ENGINES[:-1]:
            cells = []
            for i, n in enumerate(checkpoints):
                k, o = med[e][i], med["Optuna TPE"][i]
                lo, hi = median_diff_ci([r[n] for r in results[(e, w)]], [r[n] for r in results[("Optuna TPE", w)]])
                word = "ahead" if k < o else "tie" if k == o else "behind"
                cells.append("%s (%s .. %s)" % (word, fmt(lo), fmt(hi)))
            row.append(", ".join(cells))
        verdicts.append((w, row))
    lines += ["", "Each engine against Optuna at %s trials: ahead or behind by the medians, and in brackets a 95%% "
              "bootstrap interval of the difference of the medians (Kiln minus Optuna; below 0 is Kiln ahead; an "
              "interval that contains 0 means the seeds cannot tell the two apart)." % ", ".join(map(str, checkpoints)),
              "", "| workload | " + " | ".join("%s vs Optuna" % e for e in ENGINES[:-1]) + " |",
              "|---|" + "---|" * (len(ENGINES) - 1)]
    lines += ["| %s | %s |" % (w, " | ".join(v)) for w, v in verdicts]
    lines += ["", "Sampler cost: median seconds per proposal (Optuna: `ask` plus the `suggest_*` calls) with %d "
              "completed trials of random configurations and values in the study." % history, "",
              "| space | Kiln | Optuna TPE | ratio | target |", "|---|---|---|---|---|"]
    for name, (k, o) in cost.items():
        lines.append("| %s | %.1f us | %.1f ms | %.0fx | >= 100x |" % (name, k * 1e6, o * 1e3, o / k))
    lines += ["", "The GP option's proposal at its largest model (200 completed trials; beyond 200 it proposes "
              "with TPE, at TPE's cost above): " + ", ".join("%s %.0f ms" % (n, c * 1e3) for n, c in gp_cost.items())
              + "."]
    none_epochs = es_trials * 81
    lines += ["", "Early stopping (Kiln): synthetic learning curves (loss = floor(theta) + scale(theta) * epoch^-rate"
              "(theta) + N(0, 0.005), 81 epochs; a high learning rate converges fast to a worse loss), random "
              "configurations, trials run one after another. No stopping runs %d trials to the end; the median rule "
              "and Hyperband (eta 3, min 1 epoch, 4 brackets) run the same configuration stream until one finished "
              "trial's final value is at least as good as no stopping's best (capped at no stopping's budget). "
              "Medians over %d seeds." % (es_trials, a.seeds), "",
              "| stopping | trial-epochs to reach no stopping's best | share of no stopping's | seeds that reached it "
              "| trials started | best final value with 1/3 of the epochs | best final value overall |",
              "|---|---|---|---|---|---|---|",
              "| none | %d | 1 | %d/%d | %d | %s | %s |" % (
                  none_epochs, a.seeds, a.seeds, es_trials,
                  "-", fmt(statistics.median(r["none"]["best"] for r in es)))]
    for k, label in (("median", "median rule"), ("hyperband", "Hyperband")):
        ep = statistics.median(r[k]["epochs"] for r in es)
        lines.append("| %s | %d | %.2f | %d/%d | %d | %s | %s |" % (
            label, ep, ep / none_epochs, sum(r[k]["reached"] for r in es), a.seeds,
            statistics.median(r[k]["trials"] for r in es),
            fmt(statistics.median(r[k]["best_at_third"] for r in es)),
            fmt(statistics.median(r[k]["best"] for r in es))))
    lines.append("")
    report("\n".join(lines) + "\n", record)
    if record:
        # The per-seed values behind the medians, for reanalysis without a rerun.
        raw = {"%s | %s" % (e, w): sorted(({"seed": r["seed"], **{str(n): r[n] for n in checkpoints}} for r in runs),
                                          key=lambda r: r["seed"])
               for (e, w), runs in results.items()}
        with open(os.path.join(ROOT, "bench", "hpo_raw.json"), "w") as f:
            json.dump(raw, f, indent=0, sort_keys=True)


if __name__ == "__main__":
    main()
