import sys

from collectors.senders.host.cli import main

sys.exit(main())
