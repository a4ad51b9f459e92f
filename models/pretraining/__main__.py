"""``python -m models.pretraining ...``: the trainer (see ``models.pretraining.train``)."""

import sys

from models.pretraining.train import main

sys.exit(main())
