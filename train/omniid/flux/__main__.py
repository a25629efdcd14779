"""`python -m omniid.flux encode-prompt ...`"""
import sys

from omniid.flux.cli import main

sys.exit(main())
