#!/usr/bin/env python3
"""Builds the workspace's tests and runs every test binary in turn, as `cargo test` would (each
in its package's folder, the same arguments), timing each: the CI log says where the suite's time
goes. Every binary runs even after one fails; the exit status is 1 if any failed. Extra arguments
go to every test binary (`scripts/run-tests.py -- --nocapture`). The doc tests run last
(`cargo test --doc`).

    python3 scripts/run-tests.py [--only NAME[,NAME]] [-- TEST-ARGS]
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    args = sys.argv[1:]
    test_args = []
    if "--" in args:
        i = args.index("--")
        args, test_args = args[:i], args[i + 1:]
    only = None
    if args[:1] == ["--only"]:
        only = set(args[1].split(","))
    started = time.monotonic()
    build = subprocess.run(
        ["cargo", "test", "--workspace", "--locked", "--no-run", "--message-format=json-render-diagnostics"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    if build.returncode != 0:
        print("run-tests: the test build failed", file=sys.stderr)
        return build.returncode
    built = time.monotonic() - started
    binaries = []
    for line in build.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["profile"]["test"]:
            target = msg["target"]
            binaries.append((msg["package_id"], target["name"], target["kind"][0], msg["executable"], Path(msg["manifest_path"]).parent))
    print(f"run-tests: built {len(binaries)} test binaries in {built:.0f} s", flush=True)
    results = []
    for package, name, kind, exe, folder in binaries:
        crate = Path(folder).name
        label = f"{crate} {kind} {name}" if kind != "lib" else f"{crate} lib"
        if only and name not in only and crate not in only:
            continue
        print(f"\nrun-tests: {label}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run([exe, *test_args], cwd=folder).returncode
        results.append((label, rc, time.monotonic() - t0))
    if not only:
        print("\nrun-tests: doc tests", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run(["cargo", "test", "--workspace", "--locked", "--doc", *(["--", *test_args] if test_args else [])], cwd=ROOT).returncode
        results.append(("doc tests", rc, time.monotonic() - t0))
    total = time.monotonic() - started
    print("\nrun-tests: time per test binary (slowest first)")
    for label, rc, seconds in sorted(results, key=lambda r: -r[2]):
        print(f"  {seconds:8.1f} s  {'ok    ' if rc == 0 else 'FAILED'}  {label}")
    failed = [label for label, rc, _ in results if rc != 0]
    print(f"run-tests: build {built:.0f} s, tests {total - built:.0f} s, {len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print("run-tests: FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
