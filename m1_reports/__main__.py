import sys

from m1_reports.cli import main

sys.exit(main())
