"""`python -m pivot_client.cli`, the same as `pivot`."""

import sys

from pivot_client.cli.app import main

sys.exit(main())
