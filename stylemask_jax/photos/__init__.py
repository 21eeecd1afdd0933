"""Real photos and videos: robust loading, dlib 68-point landmarks, the official FFHQ alignment,
paste back, video streaming (`video`, batched by `stylemask_jax.batching`), landmark smoothing
(`smoothing`) and one face followed through a video (`tracking`).

The modules import their optional dependencies (dlib, scipy) only when used, so importing this
package is cheap; see each module's docstring.
"""

from stylemask_jax.photos.align import AlignGeometry, align_face, face_quad, paste_back
from stylemask_jax.photos.landmarks import LandmarkDetector, require_face
from stylemask_jax.photos.loading import MAX_SIDE, MIN_SIDE, load_photo

__all__ = ["AlignGeometry", "LandmarkDetector", "MAX_SIDE", "MIN_SIDE", "align_face",
           "face_quad", "load_photo", "paste_back", "require_face"]
