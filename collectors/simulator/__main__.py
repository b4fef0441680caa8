import sys

from collectors.simulator.cli import main

sys.exit(main())
