import sys

from collectors.host.cli import main

sys.exit(main())
