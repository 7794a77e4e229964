"""The interop scripts' check runner: each check runs, failures are
reported with their traceback and counted, the others still run."""
import os
import traceback

results = []
# INTEROP_ONLY=word runs only the checks whose name holds it (while developing).
ONLY = os.environ.get("INTEROP_ONLY", "")


def check(fn):
    if ONLY and ONLY not in fn.__name__:
        return fn
    try:
        fn()
        results.append((fn.__name__, None))
        print(f"ok      {fn.__name__}")
    except Exception:  # noqa: BLE001 - report every failure, keep going
        results.append((fn.__name__, traceback.format_exc()))
        print(f"FAILED  {fn.__name__}\n{traceback.format_exc()}")
    return fn


def finish(label):
    """Prints 'LABEL: N passed, M failed' and returns the exit status."""
    failed = [n for n, e in results if e]
    print(f"{label}: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
