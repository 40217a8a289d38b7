"""A one-off CLI render, cold and warm: `studio render` of the sample story with no studio running
(it starts its own Ray and deploys the engines) against the same command beside a running
`studio serve` on the same data folder (it joins that studio's Ray and engines). Run by hand:

    python -m bench.startup [--spec examples/story.yaml] [--repeat 2]

Each render is a fresh subprocess on an empty data folder (so an empty stage cache), timed from
the command's start to its exit; the CLI prints its own start-up (`ready in ... (Ray ..., engines
...)`) and render time, and the rest is the process: interpreter, imports, reading the spec,
writing the files, Ray's shut-down. `studio serve`'s own start is timed too: it is what the warm
render no longer pays. Rounds alternate cold and warm so that a machine's load weighs on both.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"ready in ([\d.]+) s \(Ray ([\d.]+) s, engines ([\d.]+) s\)")
RENDERED = re.compile(r"film rendered in ([\d.]+) s")


@dataclass(frozen=True)
class Run:
    wall_s: float
    ray_s: float
    engines_s: float
    render_s: float

    @property
    def rest_s(self) -> float:
        return self.wall_s - self.ray_s - self.engines_s - self.render_s


def environment(data_dir: Path, port: int) -> dict[str, str]:
    """The embedded default on `data_dir`, whatever this shell's STUDIO_* say."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "RAY_ADDRESS"))}
    return env | {"STUDIO_DATA_DIR": str(data_dir), "STUDIO_PORT": str(port)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli_render(spec: Path, data_dir: Path, port: int) -> Run:
    output = data_dir / "out"
    command = [sys.executable, "-m", "cluster.cli", "render", str(spec), "-o", str(output)]
    started = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment(data_dir, port), cwd=ROOT
    )
    wall = time.perf_counter() - started
    if result.returncode != 0 or not (output / "film.mp4").is_file():
        raise SystemExit(f"studio render failed:\n{result.stdout}\n{result.stderr[-3000:]}")
    ready, rendered = READY.search(result.stdout), RENDERED.search(result.stdout)
    assert ready and rendered, result.stdout
    return Run(wall, float(ready[2]), float(ready[3]), float(rendered[1]))


def warm_render(spec: Path, data_dir: Path) -> tuple[Run, float]:
    """`studio render` beside a `studio serve` on the same data folder; the serve's start-up."""
    port = free_port()
    env = environment(data_dir, port)
    started = time.perf_counter()
    serve = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "serve"], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not (data_dir / "studio.json").is_file():
            if serve.poll() is not None or time.perf_counter() - started > 600:
                raise SystemExit("studio serve did not start")
            time.sleep(0.2)
        serve_s = time.perf_counter() - started
        return cli_render(spec, data_dir, port), serve_s
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "story.yaml")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    cold: list[Run] = []
    warm: list[Run] = []
    serve_starts: list[float] = []
    spec = args.spec.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):
            cold.append(cli_render(spec, Path(tmp) / f"cold{round_}", free_port()))
            run, serve_s = warm_render(spec, Path(tmp) / f"warm{round_}")
            warm.append(run)
            serve_starts.append(serve_s)
    print(f"{spec.name}, {args.repeat} round(s): medians (range of wall)")
    print(f"{'run':<18}{'wall s':>8}{'Ray s':>8}{'engines s':>11}{'render s':>10}{'rest s':>8}")
    for name, runs in (("cold (no studio)", cold), ("warm (studio up)", warm)):
        walls = [r.wall_s for r in runs]
        med = {
            field: statistics.median(getattr(r, field) for r in runs)
            for field in ("wall_s", "ray_s", "engines_s", "render_s", "rest_s")
        }
        print(
            f"{name:<18}{med['wall_s']:>8.1f}{med['ray_s']:>8.1f}{med['engines_s']:>11.1f}"
            f"{med['render_s']:>10.1f}{med['rest_s']:>8.1f}  ({min(walls):.1f} to {max(walls):.1f})"
        )
    ratio = statistics.median(r.wall_s for r in warm) / statistics.median(r.wall_s for r in cold)
    print(f"warm / cold wall: {ratio:.2f}; `studio serve` start-up (paid once): "
          f"{statistics.median(serve_starts):.1f} s")  # fmt: skip
    print("load average (1, 5, 15 min):", os.getloadavg())


if __name__ == "__main__":
    main()
