"""Where the project's lm-eval task YAMLs live (packaged copy, or the source tree's ``task_yamls/``)."""

from pathlib import Path


def task_dir() -> Path:
    packaged = Path(__file__).resolve().parent / "task_yamls"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "task_yamls"
