"""`python -m keras_mixer.cli ...` is `keras-mixer ...`."""

import sys

from keras_mixer.cli import main

sys.exit(main())
