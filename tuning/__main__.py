"""python -m tuning <app> [flags]: see tuning/search.py."""
from tuning.search import main

raise SystemExit(main())
