import sys

from collectors.loader.cli import main

sys.exit(main())
