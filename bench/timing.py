"""Wall time and peak RSS of one command, for the benchmark scripts."""
import os
import subprocess
import sys
import time

TIME = "/usr/bin/time"  # GNU time (Debian package `time`)


def measure(cmd, out, scratch, env=None):
    """Removes `out`, syncs, runs `cmd` under GNU time and returns (wall
    seconds, peak RSS MiB). GNU time measures the command itself: a child of
    this Python process would inherit Python's own peak."""
    if os.path.exists(out):
        os.remove(out)
    subprocess.run(["sync"])
    rss_file = os.path.join(scratch, "rss.txt")
    t0 = time.perf_counter()
    p = subprocess.run([TIME, "-f", "%M", "-o", rss_file, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{p.stderr}")
    with open(rss_file) as f:
        return wall, int(f.read().split()[-1]) / 1024
