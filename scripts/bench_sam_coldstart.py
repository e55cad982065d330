#!/usr/bin/env python3
"""Cold starts of every function under SAM's Lambda emulator (bench/sam_local.md).

Each `sam local invoke` starts a fresh container, so every invocation is a cold start.
Per function, RUNS times (in rotating order across functions):
  - init_ms: from the function's first line of main to "initialized" (clients built,
    DynamoDB connection opened), as the function logs it; RIE's own REPORT "Init
    Duration" is not measured (it says ~0.05 ms);
  - first_ms: the first request's duration (RIE's REPORT "Duration");
  - for process: "clamd ready in N ms" (the layer's extension) and the peak resident
    memory of clamd and of the function, read from the host's /proc while it runs
    (RIE's "Max Memory Used" only repeats the configured size).
Prints a Markdown table of medians and ranges. Needs what scripts/sam_local.sh prepared
(the build, $HOIST_RUN/sam-env.json, the stack and the engine up); run it through
`HOIST_SAM_STEPS=build bash scripts/sam_local.sh` first, or after `make sam-local`.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

RUNS = int(os.environ.get("RUNS", "5"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("HOIST_CACHE", os.path.expanduser("~/.cache/hoist"))
ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}[os.uname().machine]
BUILD = os.path.join(CACHE, "sam", f"build-{ARCH}")
ENV = os.path.join(CACHE, "run", "sam-env.json")
FUNCTIONS = ["authorizer", "create_upload", "sign_parts", "record_parts", "get_upload", "complete_upload",
             "abort_upload", "catalog", "download", "companion", "janitor", "process"]


def logical(binary):
    return "".join(w.title() for w in binary.split("_")) + "Function"


def peak_rss_watch(stop, peaks):
    """Polls /proc for the container's clamd and bootstrap; keeps each one's VmHWM."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
                if "/opt/clamav/sbin/clamd" in cmd:
                    name = "clamd"
                elif cmd.startswith("/var/task/bootstrap"):
                    name = "function"
                else:
                    continue
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmHWM:"):
                        kib = int(line.split()[1])
                        peaks[name] = max(peaks.get(name, 0), kib)
            except OSError:
                pass
        time.sleep(0.05)


def invoke(binary):
    event = os.path.join(ROOT, "events", f"{binary}.json")
    cmd = ["sam", "local", "invoke", logical(binary), "-t", os.path.join(BUILD, "template.yaml"),
           "--env-vars", ENV, "--skip-pull-image", "--parameter-overrides", f"Architecture={ARCH}",
           "JwtIssuer=hoist-dev-idp", "JwtAudience=hoist", "AllowedOrigins=http://127.0.0.1:3000", "-e", event]
    stop, peaks = threading.Event(), {}
    watcher = threading.Thread(target=peak_rss_watch, args=(stop, peaks))
    watcher.start()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    stop.set()
    watcher.join()
    row = {}
    for line in out.stderr.splitlines():
        if '"initialized"' in line:
            row["init_ms"] = json.loads(line)["fields"]["init_ms"]
        elif line.startswith("REPORT"):
            row["first_ms"] = float(re.search(r"\tDuration: ([\d.]+) ms", line).group(1))
        elif "clamd ready in" in line:
            row["clamd_ms"] = float(re.search(r"clamd ready in (\d+) ms", line).group(1))
    if "init_ms" not in row or "first_ms" not in row:
        sys.exit(f"{binary}: no init/REPORT lines in:\n{out.stderr[-2000:]}")
    for k, v in peaks.items():
        row[f"{k}_rss_mib"] = v / 1024
    return row


def main():
    results = {f: [] for f in FUNCTIONS}
    for run in range(RUNS):
        order = FUNCTIONS[run % len(FUNCTIONS):] + FUNCTIONS[:run % len(FUNCTIONS)]
        for f in order:
            results[f].append(invoke(f))
        print(f"run {run + 1}/{RUNS} done", file=sys.stderr)

    def fmt(rows, key):
        vals = [r[key] for r in rows if key in r]
        if not vals:
            return "-"
        return f"{statistics.median(vals):.1f} ({min(vals):.1f}-{max(vals):.1f})"

    print(f"| function | init_ms | first request ms | clamd ready ms | peak RSS MiB (function / clamd) |")
    print("|---|---|---|---|---|")
    for f in FUNCTIONS:
        rows = results[f]
        rss = fmt(rows, "function_rss_mib")
        if any("clamd_rss_mib" in r for r in rows):
            rss += " / " + fmt(rows, "clamd_rss_mib")
        print(f"| {f} | {fmt(rows, 'init_ms')} | {fmt(rows, 'first_ms')} | {fmt(rows, 'clamd_ms')} | {rss} |")
    print(f"\nmedian (min-max) of {RUNS} cold starts each, functions in rotating order; {ARCH}, SAM's emulator, local stack")


if __name__ == "__main__":
    main()
