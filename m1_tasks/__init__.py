"""The m1 paper's benchmarks as lm-eval tasks: the registry (:mod:`~m1_tasks.benchmarks`), the data
(:mod:`~m1_tasks.data`), the prompt (:mod:`~m1_tasks.prompt`), the scorer (:mod:`~m1_tasks.scoring`) and the
functions the task YAMLs call (:mod:`~m1_tasks.task_utils`)."""
