"""Faces: detection's shared types (detect.py) and alignment (align.py); the detectors themselves
are under facesieve/models/detectors/.

POLICIES: which face of an image with several is kept (`--face-policy`; faces/detect.pick_face),
written here, where config can read it without loading OpenCV.
"""

POLICIES = ("central", "first")
