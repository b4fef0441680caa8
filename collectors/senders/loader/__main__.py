import sys

from collectors.senders.loader.cli import main

sys.exit(main())
