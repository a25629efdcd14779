"""`python -m omniid` is `omniid-train`."""
import sys

from omniid.cli import main

sys.exit(main())
