from collectors.export.cli import main

raise SystemExit(main())
