"""Functions usable in computed columns. `image` functions are called as methods (`t.img.rotate(90)`);
`net.presigned_url(t.col.fileurl, 3600)` is called as a function; `video`, `audio` and `document` hold the
iterators of views.

Importing this package registers every built-in: the function modules import `registry`, never the reverse,
and any import of `pxt_assets.functions.<module>` runs this file first, so the registry is always full.
"""

from pxt_assets.functions import audio, document, image, net, registry, video

__all__ = ["audio", "document", "image", "net", "registry", "video"]
