"""Shared test setup: keep runs offline, single-threaded enough for 2 cores, and out of the working tree."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
