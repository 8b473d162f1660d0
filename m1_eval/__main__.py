import sys

from m1_eval.cli import main

sys.exit(main())
