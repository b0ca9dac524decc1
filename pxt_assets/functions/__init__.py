"""Functions usable in computed columns. `image` functions are called as methods (`t.img.rotate(90)`)."""

from pxt_assets.functions import image, registry

__all__ = ["image", "registry"]
