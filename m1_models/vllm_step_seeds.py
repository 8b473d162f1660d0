"""A vLLM plugin: a streaming-input session's next step that brings a new seed starts a new random stream.

m1-vllm runs a forced request's steps as one vLLM session (:mod:`m1_models.vllm_engine`), and every seeded step
has its own seed (:func:`m1_models.budget_forcing.step_seed`), so that a step's tokens do not depend on how the
steps before it ran.  vLLM's model runner builds a request's ``torch.Generator`` once, when the request arrives, and
keeps it through the session's later inputs (``GPUModelRunner._update_streaming_request``, which the CPU runner
inherits): the new seed would be ignored.  This plugin wraps that method so that an input whose sampling
parameters carry a seed other than the one the generator was made from gets a generator made from the new seed,
exactly as a new request would.  An input with the seed it had keeps its stream (vLLM's behaviour for everyone
else's sessions is unchanged).

vLLM loads it in each of its processes through the ``vllm.general_plugins`` entry point (``pyproject.toml``);
where it is not loaded (``VLLM_PLUGINS`` names other plugins only), :func:`loaded_by_vllm` is False and m1-vllm runs
seeded steps as one request each instead.  Written here because vLLM has no option for it (checked against vllm
0.32, which the ``vllm`` extra pins).
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

PLUGIN_NAME = "m1_eval_step_seeds"  # the entry point's name (pyproject.toml)
_PATCHED = "_m1_step_seeds"


def register() -> None:
    """vLLM's general-plugin hook: wrap the model runner's streaming update (idempotent)."""
    try:
        from vllm.sampling_params import SamplingType
        from vllm.v1.worker.gpu_model_runner import GPUModelRunner
    except ImportError:  # a vLLM without this runner: sessions then keep their stream (see loaded_by_vllm)
        logger.debug("m1 step seeds: no GPUModelRunner in this vLLM", exc_info=True)
        return
    original = GPUModelRunner._update_streaming_request
    if getattr(original, _PATCHED, False):
        return

    def _update_streaming_request(self, req_id, new_req_data):
        import torch

        before = getattr(self.requests[req_id].sampling_params, "seed", None)
        state = original(self, req_id, new_req_data)
        params = new_req_data.sampling_params
        seed = getattr(params, "seed", None)
        if params is not None and params.sampling_type == SamplingType.RANDOM_SEED and seed != before:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(seed)
            state.generator = generator
        return state

    setattr(_update_streaming_request, _PATCHED, True)
    GPUModelRunner._update_streaming_request = _update_streaming_request


def loaded_by_vllm() -> bool:
    """Whether vLLM loads this plugin in its processes: it is installed as an entry point and ``VLLM_PLUGINS``
    does not leave it out."""
    from importlib.metadata import entry_points

    if not any(ep.name == PLUGIN_NAME for ep in entry_points(group="vllm.general_plugins")):
        return False
    try:
        import vllm.envs as envs

        allowed = envs.VLLM_PLUGINS
    except Exception:  # noqa: BLE001 - an unreadable setting: be safe
        return False
    return allowed is None or PLUGIN_NAME in allowed


__all__ = ["PLUGIN_NAME", "loaded_by_vllm", "register"]
