"""What a reader meets first: public names, and the resnetlib code two first paths walk through.

Reports, for the source tree on ``PYTHONPATH`` (each measurement in a fresh interpreter):

- ``import resnetlib``: the number of public names (``resnetlib.__all__``);
- the first ``resnetlib.resnet50()`` in a process (after ``import resnetlib``): the resnetlib
  files and functions entered, and how many ``forward`` calls ran;
- ``resnetlib train resnet20 --data digits`` (``resnetlib.cli.main``, after
  ``import resnetlib.cli``) up to its first optimizer step: the resnetlib files and functions
  entered.

"Entered" is counted with ``sys.setprofile``/``threading.setprofile``: distinct code objects
(file, first line, name) under the package directory, module bodies excluded (the issue's
count). Beside it, in brackets, the same without comprehensions and class bodies (code
objects Python 3.11 makes for a ``[... for ...]`` or runs once at import, not functions a
reader follows; Python 3.12 inlines comprehensions). The training path stops at the first
call of ``step`` from ``torch/optim/``. With ``--details`` it prints the functions too. Also
prints the lines of each package of src/ (as ``wc -l`` counts them).

Run from the repository root: ``PYTHONPATH=src python benchmarks/surface.py [--details]``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


_INLINED = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


class _FirstStep(BaseException):
    """Raised at the first optimizer step to end the traced training command."""


def _trace(run: Callable[[], Any], stop_at_step: bool = False) -> dict[str, Any]:
    import resnetlib

    prefix = str(Path(resnetlib.__file__).parent) + os.sep
    entered: set[tuple[str, int, str]] = set()
    forwards = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal forwards
        if event != "call":
            return
        code = frame.f_code
        name = code.co_filename
        if stop_at_step and code.co_name == "step" and f"torch{os.sep}optim{os.sep}" in name:
            sys.setprofile(None)
            raise _FirstStep
        if name.startswith(prefix) and code.co_name != "<module>":
            function = bool(code.co_flags & inspect.CO_OPTIMIZED) and code.co_name not in _INLINED
            entered.add((name[len(prefix) :], code.co_firstlineno, code.co_name, function))
            forwards += code.co_name == "forward"

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        run()
    except _FirstStep:
        pass
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    files = sorted({file for file, _, _, _ in entered})
    functions = sorted(f"{file}:{line} {name}" for file, line, name, _ in entered)
    plain = sorted(f"{file}:{line} {name}" for file, line, name, real in entered if real)
    return {"files": files, "functions": functions, "plain": plain, "forwards": forwards}


def _child(what: str) -> None:
    import resnetlib

    if what == "names":
        print(json.dumps({"names": len(resnetlib.__all__)}))
        return
    if what == "resnet50":
        print(json.dumps(_trace(resnetlib.resnet50)))
        return
    import resnetlib.cli

    with tempfile.TemporaryDirectory() as out:
        argv = ["train", "resnet20", "--data", "digits", "--out", out, "--no-progress"]
        result = _trace(lambda: resnetlib.cli.main(argv), stop_at_step=True)
    print(json.dumps(result))


def _measure(what: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, __file__, "--child", what],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _package_lines() -> dict[str, int]:
    src = ROOT / "src" / "resnetlib"
    lines: dict[str, int] = {}
    for path in sorted(src.rglob("*.py")):
        package = path.parent.relative_to(src).as_posix()
        key = "resnetlib" if package == "." else f"resnetlib.{package.replace('/', '.')}"
        lines[key] = lines.get(key, 0) + len(path.read_bytes().splitlines())
    lines["src/ in all"] = sum(lines.values())
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", action="store_true", help="list the functions entered")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    names = _measure("names")["names"]
    print(f"import resnetlib: {names} public names")
    for what, label in (("resnet50", "first resnet50()"), ("train", "train to first step")):
        result = _measure(what)
        line = f"{label}: {len(result['files'])} files, {len(result['functions'])} functions"
        line += f" ({len(result['plain'])} without comprehensions and class bodies)"
        if what == "resnet50":
            line += f", {result['forwards']} forward calls"
        print(line)
        if args.details:
            for function in result["functions"]:
                print(f"    {function}")
    print("lines of src/ by package:")
    for package, count in _package_lines().items():
        print(f"    {package:<22} {count:>6}")


if __name__ == "__main__":
    main()
