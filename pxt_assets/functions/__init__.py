"""Functions usable in computed columns. `image` functions are called as methods (`t.img.rotate(90)`);
`net.presigned_url(t.col.fileurl, 3600)` is called as a function."""

from pxt_assets.functions import image, net, registry

__all__ = ["image", "net", "registry"]
