"""The conversion of an image to Digits features, one module per stage.

``decode`` (file -> grey levels) -> ``ink`` (ink map, ground, threshold) -> ``pieces``
(connected pieces, specks, bands) -> ``nist`` (mask -> 32x32 -> 8x8). ``pipeline`` chains
them and is the one public entry.
"""
