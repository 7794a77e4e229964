"""The interop scripts' check runner: each check runs, failures are
reported with their traceback and counted, the others still run."""
import os
import time
import traceback

results = []
# INTEROP_ONLY=word runs only the checks whose name holds it (while developing).
ONLY = os.environ.get("INTEROP_ONLY", "")
# Called after every check, pass or fail (a script's scratch pruning).
after_each = []


def check(fn):
    if ONLY and ONLY not in fn.__name__:
        return fn
    start = time.monotonic()
    try:
        fn()
        results.append((fn.__name__, None))
        print(f"ok      {fn.__name__} ({time.monotonic() - start:.0f} s)", flush=True)
    except Exception:  # noqa: BLE001 - report every failure, keep going
        results.append((fn.__name__, traceback.format_exc()))
        print(f"FAILED  {fn.__name__} ({time.monotonic() - start:.0f} s)\n{traceback.format_exc()}", flush=True)
    for hook in after_each:
        hook()
    return fn


def finish(label):
    """Prints 'LABEL: N passed, M failed' and returns the exit status."""
    failed = [n for n, e in results if e]
    print(f"{label}: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def remove_scratch(folder):
    """Removes a script's scratch folder unless INTEROP_KEEP=1 (while
    debugging): a failed CI run must not leave GBs behind for the next
    script."""
    if os.environ.get("INTEROP_KEEP") != "1":
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
