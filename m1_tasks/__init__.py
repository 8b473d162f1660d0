"""m1-eval."""
