"""The Definitions that `workspace.yaml` and `dagster job execute -m pxt_assets.definitions` load."""

import pxt_assets as pxt
from pxt_assets.defs.demo import media

defs = pxt.definitions(media)
