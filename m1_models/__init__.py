"""Budget-forcing models for lm-evaluation-harness (kept import-light: the start-up hook imports this package)."""
