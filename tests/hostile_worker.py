"""Load hostile files under an address-space limit and report what each one raised.

Run by tests/test_safety.py: ``python hostile_worker.py HEADROOM_BYTES CASE...``, each case
``NAME=load:PATH`` or ``NAME=create:MODEL:PATH``. It prints one JSON line per case:
``{"case", "error" (the exception's class name, or null), "message", "seconds"}``. The limit
(``resource.RLIMIT_AS``) is set after ``import resnetlib``, to the address space the process
maps then (a CUDA build of torch maps gigabytes more than a CPU one) plus ``HEADROOM_BYTES``,
so a load that allocates what a file claims instead of what it holds fails here, not by
taking the machine's memory.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import resnetlib as rl


def address_space() -> int:
    """The bytes of address space this process maps now (``VmSize``; Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def main(argv: list[str]) -> None:
    limit = address_space() + int(argv[0])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for case in argv[1:]:
        name, _, what = case.partition("=")
        kind, _, rest = what.partition(":")
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            if kind == "load":
                rl.load(rest)
            else:
                model, _, path = rest.partition(":")
                rl.create_model(model, checkpoint_path=path)
        except BaseException as raised:  # report everything, MemoryError included
            error = raised
        seconds = time.perf_counter() - start
        result = {
            "case": name,
            "error": None if error is None else type(error).__name__,
            "message": "" if error is None else str(error),
            "seconds": seconds,
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
