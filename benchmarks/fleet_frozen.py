"""m1-server: a fleet of two vLLM OpenAI servers at 512 requests, one server frozen (SIGSTOP) halfway, vs the
same fleet healthy; same requests, same client.

    python benchmarks/fleet_frozen.py [--repeats 1] [--requests 512] [--concurrency 16] [--stall 10]

Starts two real servers (tiny model, float32, each on its own cores) on 127.0.0.1.  The healthy run goes first;
then the same requests again on fresh engines of the same fleet, and once half of them have finished one server's
process group is frozen for the rest of the run (a hung host: connections are accepted, nothing answers).  The run
must finish with the healthy run's outputs (checked); the wall-time ratio frozen/healthy is printed (target
<= 2.0: the frozen server's calls wait ``stall_timeout`` plus a health probe, then the other server does the rest;
on a 2-core machine the survivor gets only its own core).
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from fleet_vs_one import start_server, stop, wait_ready
from gen_common import instances, parser, questions, result_line, tiny_model_path

GEN_KWARGS = {"max_tokens_thinking": 128, "thinking_n_ignore": 1, "max_tokens_answer": 16, "do_sample": False}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--requests", type=int, default=512)
    p.add_argument("--concurrency", type=int, default=16, help="max_concurrency per server")
    p.add_argument("--stall", type=float, default=10.0, help="the client's stall_timeout (seconds)")
    args = p.parse_args()
    from m1_models.server_model import M1Server

    model = tiny_model_path()
    cores = os.cpu_count() or 2
    half = max(1, cores // 2)
    logs = Path(tempfile.mkdtemp(prefix="fleet_frozen_"))
    ports = (18701, 18702)
    processes = [
        start_server(model, ports[0], f"0-{half - 1}" if half > 1 else "0", logs / "a.log"),
        start_server(model, ports[1], f"{half}-{cores - 1}" if cores - half > 1 else str(half), logs / "b.log"),
    ]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes, strict=True):
            wait_ready(url, process)

        def fleet() -> M1Server:
            lm = M1Server(base_url="|".join(urls), tokenizer=model, max_concurrency=args.concurrency,
                          stall_timeout=args.stall)  # fmt: skip
            lm.progress_bar = False
            return lm

        healthy_lm = fleet()
        requests = instances(healthy_lm, questions(args.requests), GEN_KWARGS)
        start = time.monotonic()
        healthy = healthy_lm.generate_until(requests, disable_tqdm=True)
        healthy_time = time.monotonic() - start
        healthy_lm.close()

        frozen_lm = fleet()
        done = {"n": 0}
        original = frozen_lm.record_sink.add

        def counting_add(record):
            done["n"] += 1
            original(record)

        frozen_lm.record_sink.add = counting_add  # type: ignore[method-assign]

        def freeze_halfway():
            while done["n"] < len(requests) // 2:
                time.sleep(0.05)
            os.killpg(processes[1].pid, signal.SIGSTOP)
            print(f"froze {urls[1]} after {done['n']} of {len(requests)} requests")

        threading.Thread(target=freeze_halfway, daemon=True).start()
        start = time.monotonic()
        frozen = frozen_lm.generate_until(requests, disable_tqdm=True)
        frozen_time = time.monotonic() - start
        frozen_lm.close()
        same = sum(a == b for a, b in zip(healthy, frozen, strict=True))
        print(f"requests: {len(requests)}, identical outputs: {same}/{len(requests)}, cores: {cores}")
        print(f"healthy fleet: {healthy_time:.1f} s; one server frozen halfway: {frozen_time:.1f} s "
              f"(stall_timeout {args.stall} s)")  # fmt: skip
        if same != len(requests):
            raise SystemExit("the outputs differ from the healthy run's")
        print(result_line("fleet_frozen", frozen_time / healthy_time, 2.0))
    finally:
        os.killpg(processes[1].pid, signal.SIGCONT)
        for process in processes:
            stop(process)


if __name__ == "__main__":
    main()
