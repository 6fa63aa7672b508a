"""`python -m reconent.cli ...` (what `reconent sweep submit` runs on a cluster)."""
import sys

from reconent.cli import main

sys.exit(main())
