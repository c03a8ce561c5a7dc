"""`python -m tailor_localenv` is `tailor-localenv`."""

import sys

from tailor_localenv.cli import main

sys.exit(main())
