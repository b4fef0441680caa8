import sys

from collectors.dev.simulator.cli import main

sys.exit(main())
