"""`digitlab serve` under load: 50 concurrent clients for 30 s, 28x28 JSON to the MLP.

Target on the 2-core CPU: 0 errors, p99 ≤ 50 ms. The server is a real `digitlab serve`
process (one worker) on 127.0.0.1; the clients run in a second process (asyncio + httpx), each
posting MNIST test digits as {"pixels": 28x28} over its own keep-alive connection. Two loads:

- bounded (the target): each client sends 10 requests a second, as a page does while someone
  draws, 500 a second in all. Latency counts from when a request was due, not when it went out,
  so a server falling behind cannot hide its backlog (no coordinated omission).
- saturated (the capacity): each client sends its next request as soon as the answer arrives,
  so the server never idles and latency is mostly queueing behind the other 49 (Little's law:
  p50 ≈ 50 / throughput). Run for 10 s.

The first 2 s are a warm-up and not counted. Every answer's label is checked against MNIST's.
The load process shares the 2 cores with the server, as it would on one machine.

    python -m benchmarks serve_load                         # trains mlp-256-128-64 (3 s)
    python -m benchmarks.serve_load --quick                 # 5 s each, prints only
    python -m benchmarks.serve_load --run runs/mlp --clients 50 --seconds 30 --rate 10
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import save

CLIENTS, SECONDS, WARMUP = 50, 30.0, 2.0
RATE = 10.0  # requests a second per client, for the bounded load
SATURATED_SECONDS = 10.0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def load(url: str, clients: int, seconds: float, warmup: float, rate: float) -> dict:
    """Clients posting MNIST test digits for warmup + seconds, counted after the warm-up; each
    at `rate` requests a second (0: the next as soon as the answer arrives)."""
    import httpx

    from digitlab import data

    test = data.load("mnist").test
    bodies = [json.dumps({"pixels": test.images[i].tolist()}).encode() for i in range(1000)]
    labels = [str(int(y)) for y in test.labels[:1000]]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counted = {"requests": 0, "correct": 0}
    gc.collect()
    gc.freeze()  # the test set and httpx stay out of full collections: no pauses of our own
    start = time.perf_counter()
    stop_at, count_from = start + warmup + seconds, start + warmup
    headers = {"Content-Type": "application/json"}

    async def client(k: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:  # one user, one pool
            await requests(k, http)

    async def requests(k: int, http: httpx.AsyncClient) -> None:
        i = k * 20
        interval = 1 / rate if rate else 0.0
        due = start + interval * k / clients  # spread the clients over one interval
        while due < stop_at:
            if rate:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent = due  # latency from when it was due: a late send counts as waiting
                due += interval
            else:
                sent = due = time.perf_counter()
            body, label = bodies[i % len(bodies)], labels[i % len(bodies)]
            i += 1
            try:
                response = await http.post("/api/predict", content=body, headers=headers)
                answer = response.json()
                ok = response.status_code == 200
                problem = None if ok else f"HTTP {response.status_code}: {answer.get('error')}"
            except (httpx.HTTPError, ValueError) as e:
                ok, problem = False, f"{type(e).__name__}: {e}"
            done = time.perf_counter()
            if sent < count_from:
                continue
            counted["requests"] += 1
            if ok:
                latencies.append(done - sent)
                counted["correct"] += answer["label"] == label
            else:
                errors[problem] = errors.get(problem, 0) + 1

    await asyncio.gather(*(client(k) for k in range(clients)))
    ms = [t * 1000 for t in latencies]
    return {
        "clients": clients,
        "rate_per_client": rate or None,
        "seconds": seconds,
        "requests": counted["requests"],
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "throughput_per_s": counted["requests"] / seconds,
        "p50_ms": percentile(ms, 50) if ms else None,
        "p90_ms": percentile(ms, 90) if ms else None,
        "p99_ms": percentile(ms, 99) if ms else None,
        "max_ms": max(ms) if ms else None,
        "mean_ms": statistics.fmean(ms) if ms else None,
        "accuracy": counted["correct"] / max(len(ms), 1),
    }


def digitlab_command() -> list[str]:
    script = Path(sys.executable).with_name("digitlab")
    return [str(script if script.exists() else shutil.which("digitlab") or "digitlab")]


def start_server(run: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    """`digitlab serve RUN --port 0`; the URL from the line it prints."""
    server = subprocess.Popen(
        [*digitlab_command(), "serve", str(run), "--port", "0", "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = server.stdout.readline()
    found = re.search(r"http://[\w.\[\]:]+", line)
    if not found:
        server.kill()
        raise RuntimeError(f"digitlab serve did not start: {line}{server.stdout.read()}")
    return server, found.group(0)


def trained_mlp(folder: Path) -> Path:
    """mlp-256-128-64 trained on all of MNIST's training images (about 3 s)."""
    from digitlab import jobs
    from digitlab.presets import PRESETS

    preset = PRESETS["mlp-256-128-64"]
    run = folder / "mlp"
    jobs.start(run, preset.spec, "numpy", dataclasses.replace(preset.config, val_split=0.0))
    return run


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, of this process's waited-for children)."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return busy / ticks, children.ru_utime + children.ru_stime


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    run: Path | None, clients: int, loads: list[tuple[float, float]], workers: int = 1
) -> list[dict]:
    """Start a server; for each (rate, seconds), load it from a second process; stop it."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        run = run or trained_mlp(Path(tmp))
        server, url = start_server(run, workers)
        try:
            for rate, seconds in loads:
                options = [
                    "--clients",
                    str(clients),
                    "--seconds",
                    str(seconds),
                    "--rate",
                    str(rate),
                ]
                machine, children = cpu_seconds()
                served, started = process_cpu_seconds(server.pid), time.perf_counter()
                client = subprocess.run(
                    [sys.executable, "-m", "benchmarks.serve_load", "--client", url, *options],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=Path(__file__).resolve().parents[1],
                )
                figures = json.loads(client.stdout)
                elapsed = time.perf_counter() - started
                machine_after, children_after = cpu_seconds()
                ours = children_after - children + process_cpu_seconds(server.pid) - served
                cpus = os.cpu_count() or 1
                figures |= {  # CPU shares of the whole machine over the client's whole run
                    "cpu_server_and_clients": ours / (elapsed * cpus),
                    "cpu_other_processes": max(0.0, machine_after - machine - ours)
                    / (elapsed * cpus),
                }
                results.append(figures | {"workers": workers, "cpus": cpus})
        finally:
            server.terminate()
            server.wait(timeout=30)
    return results


def row(r: dict) -> str:
    load = f"{r['rate_per_client']:g}/s each" if r["rate_per_client"] else "saturated"
    target = "0 errors, p99 ≤ 50 ms: " + (
        "met" if r["errors"] == 0 and r["p99_ms"] <= 50 else "missed"
    )
    return (
        f"| {r['clients']} clients, {load} | {r['seconds']:g} s | {r['requests']:,} "
        f"| {r['throughput_per_s']:,.0f}/s | {r['p50_ms']:.1f} ms | {r['p90_ms']:.1f} ms "
        f"| {r['p99_ms']:.1f} ms | {r['max_ms']:.1f} ms | {r['errors']} | {r['accuracy']:.1%} "
        f"| {target if r['rate_per_client'] else 'capacity'} "
        f"| {r['cpu_server_and_clients']:.0%} / {r['cpu_other_processes']:.0%} |"
    )


def markdown(results: list[dict]) -> str:
    return "\n".join(
        [
            "## Serving (`digitlab serve`, 28×28 JSON to mlp-256-128-64)",
            "",
            "Concurrent clients in a second process on 127.0.0.1 (asyncio + httpx, one keep-alive "
            "connection each) against one uvicorn worker, after a 2 s warm-up. Bounded: each "
            "client sends 10 requests a second, latency counted from when each was due. "
            "Saturated: each sends the next as soon as its answer arrives (the server's capacity; "
            "latency is mostly queueing). Latency is measured in the client. The last column is "
            "the share of the machine's CPU the server and clients used, and what other "
            "processes used meanwhile (figures taken on a busy machine are not comparable).",
            "",
            "| load | time | requests | throughput | p50 | p90 | p99 | max | errors "
            "| labels right | target | CPU: ours / others |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
            *(row(r) for r in results),
        ]
    )


def run(
    clients: int = CLIENTS,
    seconds: float = SECONDS,
    rate: float = RATE,
    run_dir: Path | None = None,
) -> dict:
    """The benchmark as `python -m benchmarks serve_load` runs it: measure, then save."""
    loads = [(rate, seconds), (0.0, min(seconds, SATURATED_SECONDS))]
    results = {"rows": measure(run_dir, clients, loads)}
    save("serve_load", results, markdown(results["rows"]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_load", description=__doc__)
    parser.add_argument("--run", type=Path, help="a finished run (default: train the MLP)")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--rate", type=float, default=RATE, help="per client; 0: saturate")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--quick", action="store_true", help="5 s, print only, save nothing")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # the load process
    args = parser.parse_args()
    if args.client:
        figures = asyncio.run(load(args.client, args.clients, args.seconds, WARMUP, args.rate))
        print(json.dumps(figures))
    elif args.quick or args.workers != 1:
        seconds = 5.0 if args.quick else args.seconds
        loads = [(args.rate, seconds), (0.0, seconds)]
        results = measure(args.run, args.clients, loads, args.workers)
        print(markdown(results))
    else:
        print(markdown(run(args.clients, args.seconds, args.rate, args.run)["rows"]))


if __name__ == "__main__":
    main()
