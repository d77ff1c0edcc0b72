"""`python -m codemt.cli`: the `codemt` command."""

import sys

from codemt.cli import main

sys.exit(main())
