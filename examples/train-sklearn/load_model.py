#!/usr/bin/python3
"""Check a model.tar.gz produced by the train-sklearn example.

    /usr/bin/python3 load_model.py MODEL_TAR_GZ [DATA_CSV] [--min-accuracy 0.8]

MODEL_TAR_GZ may be a path or a file:// URI (as in the job's "model_artifact").
DATA_CSV defaults to data/train.csv next to this script. Extracts the archive
to a temp dir, loads model.joblib (+ metadata.json if present), predicts on the
dataset and prints "accuracy=<value>". Exit status: 0 if accuracy > the minimum
(default 0.8), 1 if not, 2 on usage/load errors.
"""
import argparse
import csv
import json
import os
import sys
import tarfile
import tempfile
from urllib.parse import unquote, urlparse


def safe_extract(tar, dest):
    dest_real = os.path.realpath(dest)
    for m in tar.getmembers():
        target = os.path.realpath(os.path.join(dest, m.name))
        if os.path.commonpath([dest_real, target]) != dest_real:
            raise ValueError(f"unsafe path in archive: {m.name}")
        if m.issym() or m.islnk() or m.isdev():
            raise ValueError(f"links/devices not allowed in archive: {m.name}")
    tar.extractall(dest)


def find(root, name):
    for d, _, files in os.walk(root):
        if name in files:
            return os.path.join(d, name)
    return None


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_tar")
    ap.add_argument("data_csv", nargs="?", default=os.path.join(here, "data", "train.csv"))
    ap.add_argument("--min-accuracy", type=float, default=0.8)
    args = ap.parse_args()

    path = args.model_tar
    if path.startswith("file://"):
        path = unquote(urlparse(path).path)

    import joblib
    import numpy as np

    try:
        with tempfile.TemporaryDirectory(prefix="kiln-model-") as tmp:
            with tarfile.open(path, "r:*") as tar:
                safe_extract(tar, tmp)
            model_path = find(tmp, "model.joblib")
            if model_path is None:
                raise FileNotFoundError(f"model.joblib not found in {path}")
            meta = {}
            meta_path = os.path.join(os.path.dirname(model_path), "metadata.json")
            if os.path.exists(meta_path):
                with open(meta_path) as f:
                    meta = json.load(f)
            model = joblib.load(model_path)
    except Exception as e:  # noqa: BLE001
        print(f"error: cannot load model from {path}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    with open(args.data_csv, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    header, body = [c.strip() for c in rows[0]], rows[1:]
    data = np.asarray(body, dtype=np.float64)
    target = meta.get("target_column", "target")
    t = header.index(target) if target in header else len(header) - 1
    features = [c for i, c in enumerate(header) if i != t]
    if meta.get("feature_names") and meta["feature_names"] != features:
        print("error: dataset columns do not match the model's feature_names", file=sys.stderr)
        return 2
    X = np.delete(data, t, axis=1)
    y = data[:, t].astype(np.int64)

    acc = float(np.mean(model.predict(X) == y))
    print(f"model={type(model).__name__} sklearn={meta.get('framework_version', '?')} "
          f"validation_accuracy(at train time)={meta.get('validation_accuracy', '?')}")
    print(f"rows={len(y)} accuracy={acc:.4f}")
    if acc > args.min_accuracy:
        print(f"OK: accuracy {acc:.4f} > {args.min_accuracy}")
        return 0
    print(f"FAIL: accuracy {acc:.4f} <= {args.min_accuracy}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
