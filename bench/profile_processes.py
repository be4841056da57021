"""Sample running processes with py-spy and print where their time goes, per kind.

Run it next to a benchmark (``bench/end_to_end.py``) while a scenario is under way:

    .venv/bin/python bench/profile_processes.py --seconds 20
    .venv/bin/python bench/profile_processes.py --kind web=uvicorn --kind runs="worker -Q runs"

Every process whose command line contains a kind's text is sampled (``py-spy record --format
raw``, 100 samples a second, idle threads left out) for the same window; the samples of one
kind are added up and two lists printed: the functions of this repository that the most
samples passed through (inclusive: the step that costs), and the functions the most samples
were in (self: where the CPU actually is, libraries included). Samples whose innermost frame
is a wait (select, poll, a lock, a socket read) are counted apart and left out of the
shares. ``--gil`` counts only samples holding the GIL. Needs ptrace rights (root, or
``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_KINDS = ("web=uvicorn", "runs=worker -Q runs")


def processes(text: str) -> list[int]:
    """Python processes whose command line contains ``text``, and their children (uvicorn's
    workers are spawned with another command line); never this one."""
    commands: dict[int, str] = {}
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        commands[pid] = command
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
    found = {
        pid
        for pid, command in commands.items()
        if text in command and "profile_processes" not in command
    }
    found |= {pid for pid, parent in parents.items() if parent in found}
    return sorted(pid for pid in found if "python" in commands[pid])


def frame_name(frame: str) -> str:
    """``function (path:line)`` from py-spy, shortened to ``path:function``."""
    function, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for prefix in (str(REPO) + "/", "site-packages/", "lib/python3"):
        if prefix in path:
            path = path.split(prefix, 1)[1]
            break
    return f"{path}:{function}"


# Leaves that are a thread waiting (on sockets, locks, the database) rather than working:
# py-spy's idle detection misses some of them without pausing the process.
WAITING = (
    "select",
    "poll",
    "wait",
    "_worker",
    "sleep",
    "read",
    "recv",
    "recv_into",
    "accept",
    "acquire",
)


def waiting(frame: str) -> bool:
    function = frame_name(frame).rsplit(":", 1)[1]
    # An event loop's run as the innermost Python frame: it is in epoll_wait.
    return function.rsplit(".", 1)[-1] in WAITING or function == "Runner.run"


def summarise(files: list[Path], top: int) -> tuple[int, list[str]]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = waits = 0
    for file in files:
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [frame for frame in stack.split(";") if " (" in frame]
            if not frames:
                continue
            if waiting(frames[-1]):
                waits += count
                continue
            total += count
            own[frame_name(frames[-1])] += count
            ours = {
                frame_name(frame)
                for frame in frames
                if str(REPO) in frame and "/.venv/" not in frame and "site-packages" not in frame
            }
            for name in ours:
                inclusive[name] += count
    total = max(total, 1)
    lines = [f"  {waits:,} samples waiting (sockets, locks, the database) left out"]
    lines += [f"  {'share':>6}  inclusive, this repository's functions"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    lines += [f"  {'share':>6}  self, any function"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    return total, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--kind",
        action="append",
        help="NAME=TEXT: processes whose command line contains TEXT (default: web, runs)",
    )
    parser.add_argument("--top", type=int, default=15, help="functions per list")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    kinds = dict(kind.split("=", 1) for kind in (args.kind or DEFAULT_KINDS))
    with tempfile.TemporaryDirectory(prefix="bench-py-spy-") as folder:
        running: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        for name, text in kinds.items():
            pids = processes(text)
            if not pids:
                print(f"{name}: no process has {text!r} in its command line", file=sys.stderr)
            for pid in pids:
                output = Path(folder) / f"{name}-{pid}.txt"
                argv = [py_spy, "record", "--format", "raw", "--rate", "100", "--nonblocking"]
                argv.append("--full-filenames")  # to tell this repository's frames apart
                argv += ["-d", str(round(args.seconds)), "-p", str(pid), "-o", str(output)]
                if args.gil:
                    argv.append("--gil")
                process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                running.append((name, output, process))
        for _name, _output, process in running:
            _out, error = process.communicate()
            if process.returncode:
                print(error.decode(errors="replace")[-500:], file=sys.stderr)
        for name in kinds:
            files = [output for kind, output, _p in running if kind == name and output.exists()]
            if not files:
                continue
            total, lines = summarise(files, args.top)
            print(f"\n{name}: {len(files)} processes, {total:,} busy samples in {args.seconds:g} s")
            print("\n".join(lines))


if __name__ == "__main__":
    main()
