"""python -m tuning <app> [flags]: see tuning/search.py."""
import apps  # noqa: F401  (quiets TensorFlow's C++ start-up chatter before TF loads)
from tuning.search import main

raise SystemExit(main())
