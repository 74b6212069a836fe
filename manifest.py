# MicroPython manifest for the firmware package (micropython-lib style).
#
# Freeze it into a custom image: make ... FROZEN_MANIFEST=/path/to/bijli/manifest.py
# (hil/mpy_build.py does this for the board-fit targets). Frozen modules keep their bytecode
# and strings in flash, not in the GC heap.
metadata(description="bijli prepaid electricity meter firmware", version="0.1.0")

package("firmware")
