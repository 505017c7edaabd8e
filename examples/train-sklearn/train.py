#!/usr/bin/python3
"""Kiln example: train a scikit-learn GradientBoostingClassifier.

Follows the Kiln / SageMaker-style in-instance contract (docs/runtime-contract.md):

  hyperparameters  $KILN_ML_ROOT/input/config/hyperparameters.json
                   (values may be JSON numbers or strings; falls back to the
                   SM_HPS env var when the file does not exist)
  training data    $SM_CHANNEL_TRAIN   (default $KILN_ML_ROOT/input/data/train)
                   every *.csv in it (or the file itself), header row required
  model            $SM_MODEL_DIR       (default $KILN_ML_ROOT/model)
                   -> model.joblib + metadata.json
  metrics          $SM_OUTPUT_DATA_DIR (default $KILN_ML_ROOT/output/data)
                   -> metrics.json
  failure          $KILN_ML_ROOT/output/failure (written on error, exit 1)

KILN_ML_ROOT defaults to /opt/ml; set it (and/or the SM_* vars) to run the
script outside a Kiln instance.
"""
import glob
import json
import os
import sys
import time
import traceback

T0 = time.monotonic()

ML_ROOT = os.environ.get("KILN_ML_ROOT") or "/opt/ml"
HP_PATH = os.path.join(ML_ROOT, "input", "config", "hyperparameters.json")
FAILURE_PATH = os.path.join(ML_ROOT, "output", "failure")

# name -> (type, default)
HP_SPEC = {
    "n_estimators": (int, 50),
    "max_depth": (int, 4),
    "learning_rate": (float, 0.1),
    "subsample": (float, 1.0),
    "validation_fraction": (float, 0.2),
    "random_state": (int, 42),
    "target_column": (str, "target"),
    "log_every": (int, 10),
}


def log(msg):
    print(f"[train {time.monotonic() - T0:6.2f}s] {msg}", flush=True)


def coerce(name, value, typ):
    """SageMaker passes every hyperparameter as a string; Kiln passes JSON
    values. Accept both ("50", 50, 50.0, "5e1" for ints; "0.1", 0.1 for floats)."""
    if typ is str:
        return value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, bool):
        raise ValueError(f"hyperparameter {name}: expected a number, got {value!r}")
    if isinstance(value, str):
        value = value.strip()
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"hyperparameter {name}: expected a number, got {value!r}") from None
    if typ is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"hyperparameter {name}: expected an integer, got {value!r}")
            value = int(value)
        return int(value)
    return float(value)


def load_hyperparameters():
    if os.path.exists(HP_PATH):
        with open(HP_PATH) as f:
            raw = json.load(f)
        source = HP_PATH
    elif os.environ.get("SM_HPS"):
        raw = json.loads(os.environ["SM_HPS"])
        source = "$SM_HPS"
    else:
        raw = {}
        source = "defaults"
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: hyperparameters must be a JSON object")
    hp = {}
    for name, (typ, default) in HP_SPEC.items():
        hp[name] = coerce(name, raw[name], typ) if name in raw else default
    unknown = sorted(set(raw) - set(HP_SPEC))
    if hp["n_estimators"] < 1:
        raise ValueError("hyperparameter n_estimators must be >= 1")
    if hp["max_depth"] < 1:
        raise ValueError("hyperparameter max_depth must be >= 1")
    if not 0.0 < hp["validation_fraction"] < 1.0:
        raise ValueError("hyperparameter validation_fraction must be in (0, 1)")
    log(f"hyperparameters from {source}: {json.dumps(hp, sort_keys=True)}")
    if unknown:
        log(f"ignoring unknown hyperparameters: {', '.join(unknown)}")
    return hp


def load_csvs(channel, target_column):
    import numpy as np

    if not os.path.exists(channel):
        raise FileNotFoundError(f"training channel {channel} does not exist (set SM_CHANNEL_TRAIN)")
    if os.path.isfile(channel):
        files = [channel]
    else:
        files = sorted(glob.glob(os.path.join(channel, "**", "*.csv"), recursive=True))
    if not files:
        raise FileNotFoundError(f"no .csv files in training channel {channel}")
    header, rows = None, []
    for path in files:
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        if not lines:
            continue
        h = [c.strip() for c in lines[0].split(",")]
        if header is None:
            header = h
        elif h != header:
            raise ValueError(f"{path}: header differs from {files[0]}")
        for i, ln in enumerate(lines[1:], start=2):
            try:
                rows.append([float(x) for x in ln.split(",")])
            except ValueError:
                raise ValueError(f"{path}:{i}: non-numeric value") from None
            if len(rows[-1]) != len(header):
                raise ValueError(f"{path}:{i}: expected {len(header)} columns, got {len(rows[-1])}")
    if header is None or not rows:
        raise ValueError(f"training channel {channel} has no data rows")
    data = np.asarray(rows, dtype=np.float64)
    if target_column in header:
        t = header.index(target_column)
    else:
        t = len(header) - 1
        log(f"column {target_column!r} not found, using last column {header[t]!r} as label")
    features = [c for i, c in enumerate(header) if i != t]
    X = np.delete(data, t, axis=1)
    y = data[:, t].astype(np.int64)
    log(f"loaded {len(files)} file(s) from {channel}: {X.shape[0]} rows, {X.shape[1]} features")
    return X, y, features, header[t], files


def main():
    channel = os.environ.get("SM_CHANNEL_TRAIN") or os.path.join(ML_ROOT, "input", "data", "train")
    model_dir = os.environ.get("SM_MODEL_DIR") or os.path.join(ML_ROOT, "model")
    output_data_dir = os.environ.get("SM_OUTPUT_DATA_DIR") or os.path.join(ML_ROOT, "output", "data")
    log(f"runtime={os.environ.get('KILN_RUNTIME', 'none')} job={os.environ.get('KILN_JOB_ID', '-')} "
        f"host={os.environ.get('SM_CURRENT_HOST', '-')} cpus={os.environ.get('SM_NUM_CPUS', '-')}")

    hp = load_hyperparameters()

    import joblib
    import numpy as np
    import sklearn
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    X, y, features, target, files = load_csvs(channel, hp["target_column"])
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError("training data has a single class")
    stratify = y if counts.min() >= 2 else None
    X_tr, X_val, y_tr, y_val = train_test_split(
        X, y, test_size=hp["validation_fraction"], random_state=hp["random_state"], stratify=stratify)
    log(f"split: train={len(y_tr)} validation={len(y_val)} classes={classes.tolist()}")

    model = GradientBoostingClassifier(
        n_estimators=hp["n_estimators"], max_depth=hp["max_depth"],
        learning_rate=hp["learning_rate"], subsample=hp["subsample"],
        random_state=hp["random_state"])
    t_fit = time.monotonic()
    model.fit(X_tr, y_tr)
    fit_s = time.monotonic() - t_fit
    log(f"fit done in {fit_s:.2f}s")

    # Per-stage progress, computed after the fit from the staged predictions.
    every = max(1, hp["log_every"])
    for stage, pred in enumerate(model.staged_predict(X_val), start=1):
        if stage % every == 0 or stage == hp["n_estimators"]:
            acc = float(np.mean(pred == y_val))
            log(f"stage={stage}/{hp['n_estimators']} train_loss={model.train_score_[stage - 1]:.4f} "
                f"stage_validation_accuracy={acc:.4f}")

    train_acc = float(model.score(X_tr, y_tr))
    val_acc = float(model.score(X_val, y_val))
    print(f"train_accuracy={train_acc:.4f}", flush=True)
    print(f"validation_accuracy={val_acc:.4f}", flush=True)

    os.makedirs(model_dir, exist_ok=True)
    model_path = os.path.join(model_dir, "model.joblib")
    joblib.dump(model, model_path)
    metadata = {
        "framework": "scikit-learn",
        "framework_version": sklearn.__version__,
        "estimator": type(model).__name__,
        "model_file": "model.joblib",
        "feature_names": features,
        "target_column": target,
        "classes": classes.tolist(),
        "hyperparameters": hp,
        "n_train": int(len(y_tr)),
        "n_validation": int(len(y_val)),
        "train_accuracy": round(train_acc, 6),
        "validation_accuracy": round(val_acc, 6),
        "fit_seconds": round(fit_s, 3),
        "training_files": [os.path.basename(p) if os.path.isfile(channel) else os.path.relpath(p, channel)
                           for p in files],
        "job_id": os.environ.get("KILN_JOB_ID"),
        "runtime": os.environ.get("KILN_RUNTIME"),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(os.path.join(model_dir, "metadata.json"), "w") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"saved {model_path} and metadata.json")

    # Optional extra output; never fail the job over it.
    try:
        os.makedirs(output_data_dir, exist_ok=True)
        with open(os.path.join(output_data_dir, "metrics.json"), "w") as f:
            json.dump({"train_accuracy": train_acc, "validation_accuracy": val_acc}, f)
            f.write("\n")
    except OSError as e:
        log(f"warning: could not write metrics to {output_data_dir}: {e}")
    log("done")


def write_failure(exc):
    msg = f"{type(exc).__name__}: {exc}"
    try:
        os.makedirs(os.path.dirname(FAILURE_PATH), exist_ok=True)
        with open(FAILURE_PATH, "w") as f:
            f.write(msg[:1024] + "\n")
    except OSError as e:
        print(f"could not write {FAILURE_PATH}: {e}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - report every failure through the contract
        traceback.print_exc()
        sys.stderr.flush()
        write_failure(exc)
        sys.exit(1)
