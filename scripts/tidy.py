#!/usr/bin/env python3
"""Runs clang-tidy over the given sources, skipping those it already found clean.

clang-tidy's verdict on a file is a pure function of what it reads: the file after
preprocessing (every header, the project's and the system's), the compile flags,
the .clang-tidy config and clang-tidy itself. This script hashes exactly those
(with the checkout's absolute path taken out, so a clean clone elsewhere gets the
same keys) and skips a file whose key is listed in .ci/tidy-clean.txt, as ccache
skips a compile. A file whose key is not listed is linted; if it is clean, its key
is added to the list. Commit the list after a local `scripts/lint.sh` so CI only
lints what changed; a stale or missing list costs time, never correctness.

usage: tidy.py BUILD_DIR FILE...   (exit 1 if any file has a warning)
"""
import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".ci", "tidy-clean.txt")


def normalize(text):
    return text.replace(ROOT, "<root>")


def key_of(entry, tidy_version, config):
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    # The preprocessor's view of the file: drop the output, ask for -E.
    pp = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        pp.append(a)
    pp += ["-E", "-P", "-o", "-"]
    out = subprocess.run(pp, cwd=entry["directory"], capture_output=True, check=True).stdout
    h = hashlib.sha256()
    for part in (tidy_version, config, normalize(" ".join(a for a in args if not a.endswith(".o")))):
        h.update(part.encode())
        h.update(b"\0")
    h.update(normalize(out.decode("utf-8", "replace")).encode())
    return h.hexdigest()


def main():
    build, files = sys.argv[1], sys.argv[2:]
    with open(os.path.join(build, "compile_commands.json")) as f:
        db = {os.path.realpath(e["file"]): e for e in json.load(f)}
    tidy_version = subprocess.run(["clang-tidy", "--version"], capture_output=True, text=True).stdout
    with open(os.path.join(ROOT, ".clang-tidy")) as f:
        config = f.read()
    clean = set()
    if os.path.exists(CACHE):
        with open(CACHE) as f:
            clean = {line.strip() for line in f if line.strip()}

    def check(path):
        entry = db.get(os.path.realpath(os.path.join(ROOT, path)))
        if entry is None:
            return path, None, False, "not in compile_commands.json"
        key = key_of(entry, tidy_version, config)
        if key in clean:
            return path, key, True, "cached"
        r = subprocess.run(["clang-tidy", "-p", build, "--quiet", path], cwd=ROOT, capture_output=True, text=True)
        ok = r.returncode == 0 and "warning:" not in r.stdout and "error:" not in r.stdout
        return path, key, ok, r.stdout + ("" if ok else r.stderr[-2000:])

    failed, linted, cached, current = [], 0, 0, set()
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for path, key, ok, out in pool.map(check, files):
            if out == "cached":
                cached += 1
                current.add(key)
                continue
            linted += 1
            if ok and key:
                current.add(key)
            else:
                failed.append(path)
                print("== clang-tidy: %s\n%s" % (path, out))
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    with open(CACHE, "w") as f:
        # Only the keys of this run's files: the list never outgrows the tree.
        f.write("".join(k + "\n" for k in sorted(current)))
    print("clang-tidy: %d files linted, %d unchanged since a clean run, %d with warnings" % (linted, cached, len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
