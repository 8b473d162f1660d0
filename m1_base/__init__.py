"""The bottom layer of m1-eval, which every other package imports and which imports none of them:

* :mod:`m1_base.errors`: every error a user can cause, in one tree;
* :mod:`m1_base.markers`: the thinking markers the m1 models write and the scorer reads;
* :mod:`m1_base.values`: the strict parsers of a user's values (booleans, whole numbers, token counts,
  probabilities, strings, lists), shared by gen_kwargs, every backend's model_args and the commands' flags.

The layers, each importing only those below it: ``m1_base`` < ``m1_tasks`` < ``m1_models`` < ``m1_reports`` <
``m1_eval`` (the commands and the start-up hook); ``tests/test_layers.py`` fails on an import that goes up.
Standard library only; this ``__init__`` imports nothing (the start-up hook runs at every interpreter start).
"""
