#!/usr/bin/env python3
"""Regenerate data/train.csv for the train-sklearn example.

Deterministic: writes scikit-learn's bundled Wisconsin breast cancer dataset
(569 rows, 30 numeric features, binary target) as CSV with a header row.
Feature names are snake_cased; the label is the last column, "target"
(0 = malignant, 1 = benign). No network access is needed.

    /usr/bin/python3 examples/train-sklearn/make_data.py [OUT_CSV]
"""
import csv
import os
import sys

from sklearn.datasets import load_breast_cancer


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "data", "train.csv")
    ds = load_breast_cancer()
    header = [n.strip().replace(" ", "_") for n in ds.feature_names] + ["target"]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for row, label in zip(ds.data, ds.target):
            # repr() of a float is the shortest string that round-trips.
            w.writerow([repr(float(v)) for v in row] + [int(label)])
    print(f"wrote {len(ds.target)} rows x {len(header)} columns to {out}")


if __name__ == "__main__":
    main()
