"""m1-server: a fleet of two vLLM OpenAI servers vs one server, same requests, same client.

    python benchmarks/fleet_vs_one.py [--repeats 3] [--requests 64] [--concurrency 16]

Starts real servers (``python -m vllm.entrypoints.openai.api_server``, tiny model, float32) on 127.0.0.1: one
server for the "one" side, two for the "fleet" side (on vLLM-CPU each bound to its own cores with
VLLM_CPU_OMP_THREADS_BIND; the single server gets all of them). Start-up is not timed. Greedy budget forcing
(budget 256, one ignore round); the outputs of both sides must be identical (checked). Prints the wall-time ratio
fleet/one (target <= 0.6: two GPUs, each with its own server, should nearly halve the time; on a 2-core CPU
machine the two servers share the cores the one server had, so expect no gain there).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gen_common import alternate, instances, parser, questions, result_line, tiny_model_path

GEN_KWARGS = {"max_tokens_thinking": 256, "thinking_n_ignore": 1, "max_tokens_answer": 32, "do_sample": False}


def start_server(model: str, port: int, cores: str, log: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
        "--port", str(port), "--dtype", "float32", "--enforce-eager", "--gpu-memory-utilization", "0.15",
        "--max-model-len", "2048", "--no-enable-chunked-prefill",
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": cores, "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server for {url} exited; see its log")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not start within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=16, help="max_concurrency per server")
    args = p.parse_args()
    from m1_models.server_model import M1Server

    model = tiny_model_path()
    cores = os.cpu_count() or 2
    logs = Path(tempfile.mkdtemp(prefix="fleet_vs_one_"))
    ports = (18601, 18602, 18603)
    half = max(1, cores // 2)
    processes = [
        start_server(model, ports[0], f"0-{cores - 1}", logs / "one.log"),
        start_server(model, ports[1], f"0-{half - 1}" if half > 1 else "0", logs / "fleet_a.log"),
        start_server(model, ports[2], f"{half}-{cores - 1}" if cores - half > 1 else str(half), logs / "fleet_b.log"),
    ]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes, strict=True):
            wait_ready(url, process)
        one = M1Server(base_url=urls[0], tokenizer=model, max_concurrency=args.concurrency)
        fleet = M1Server(base_url=f"{urls[1]}|{urls[2]}", tokenizer=model, max_concurrency=args.concurrency)
        outputs: dict[str, list[str]] = {}
        for lm in (one, fleet):
            lm.progress_bar = False
        requests = instances(one, questions(args.requests), GEN_KWARGS)

        def side(name: str, lm: M1Server):
            def run() -> None:
                texts = lm.generate_until(requests, disable_tqdm=True)
                if outputs.setdefault(name, texts) != texts:
                    raise SystemExit(f"{name}: outputs differ between repetitions")

            return run

        # only one side's servers work at a time: the idle side's servers wait (no load of their own)
        timings = alternate({"one": side("one", one), "fleet": side("fleet", fleet)}, args.repeats)
        same = sum(a == b for a, b in zip(outputs["one"], outputs["fleet"], strict=True))
        sent = {server.url: server.steps_sent for server in fleet.step_engine().servers}  # type: ignore[attr-defined]
        print(f"requests: {len(requests)}, identical outputs: {same}/{len(requests)}, cores: {cores}")
        print(f"fleet steps per server: {sent}")
        for name in ("one", "fleet"):
            print(timings.describe(name))
        print(result_line("fleet_vs_one", timings.median("fleet") / timings.median("one"), 0.6))
        one.close()
        fleet.close()
    finally:
        for process in processes:
            stop(process)


if __name__ == "__main__":
    main()
