"""`python -m hookscope` is the `hookscope` command."""

import sys

from hookscope.cli import main

sys.exit(main())
