"""m1-eval's commands and its pieces around lm-eval: ``m1-eval`` (:mod:`~m1_eval.cli`: demo, doctor, tiny-model),
``m1-sweep`` (:mod:`~m1_eval.sweep`), the start-up hook (:mod:`~m1_eval.lm_eval_hook`), the tiny test model
(:mod:`~m1_eval.tiny_model`).

The top layer: it imports every other package (see :mod:`m1_base`), none imports it.  This ``__init__`` imports
nothing: the start-up hook runs at every interpreter start.
"""
