"""`python -m app` is the `hookscope` command."""

import sys

from app.cli import main

sys.exit(main())
