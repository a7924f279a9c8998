"""Real test images made on the fly (JPEG/PNG bytes with texture, so no filter mistakes them for solid colour), and
plain tar archives of them."""

from __future__ import annotations

import io


def jpeg_bytes(size=(64, 48), color=(200, 30, 30), seed: int = 0, **save) -> bytes:
    """A real JPEG with some texture (so it is not a solid colour)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = (rng.random((size[1], size[0], 3)) * 60 + np.array(color) * 0.7).clip(0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90, **save)
    return buf.getvalue()


def png_bytes(size=(64, 48), seed: int = 0, mode: str = "RGB") -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = (rng.random((size[1], size[0], 3)) * 255).astype("uint8")
    img = Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A plain (ustar/pax) tar of regular files, in the given order."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
